"""`xmsearch bench langid`: how often a short text reaches its own language's adapter, on the
held-out part of the short-text sets, per genre, per length band (1-4 and 5-12 words) and per
language; each routing and each single detector side by side in one run. Two genres:
- interface (`data/langid_short.jsonl`): real translated texts in the 81 XMOD languages, from the
  message catalogues of Debian packages (built by scripts/make-langid-eval);
- conversation (`data/langid_conversation.jsonl`): questions and replies of real dialogues in 26
  languages, from chatterbot-corpus (BSD-3-Clause; scripts/make-langid-eval --conversation).
No threshold or rule may be tuned on the held-out part: tune on `--split dev`."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources

from xmsearch.retriever.model.langid import NO_HINTS, Detection, Hints, LanguageDetector
from xmsearch.retriever.model.languages import COLBERT_XM_LANGUAGES, LanguageResolver

BANDS = ("1-4", "5-12")
SETS = {"interface": "data/langid_short.jsonl", "conversation": "data/langid_conversation.jsonl"}
GENRES = tuple(SETS)


@dataclass(frozen=True)
class Item:
    lang: str
    band: str
    split: str
    text: str
    source: str
    genre: str = "interface"


Route = Callable[[Item], str]  # a text -> the adapter it is routed to


@dataclass
class Figures:
    """One routing or detector: the share of texts routed to the right adapter, per band and language."""

    name: str
    # share right per band and per genre and band ("1-4", "conversation 1-4", "conversation", "all", ...)
    accuracy: dict[str, float] = field(default_factory=dict)
    per_language: dict[str, float] = field(default_factory=dict)  # language -> share right (both bands)
    ms_per_text: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def load(split: str) -> list[Item]:
    """The texts of every genre in the split (dev, heldout or all)."""
    items = []
    for genre, path in SETS.items():
        raw = resources.files("xmsearch.bench").joinpath(path).read_text(encoding="utf-8")
        items += [Item(**json.loads(line), genre=genre) for line in raw.splitlines() if line.strip()]
    return [item for item in items if split == "all" or item.split == split]


def _tenant_languages(item: Item, resolver: LanguageResolver) -> tuple[str, ...]:
    """A multilingual tenant's document languages: the text's own and two others, drawn for the text
    (the same every run), in a random order (the text's language is not always its most frequent)."""
    rng = random.Random(item.text)
    others = sorted({code.split("_")[0] for code in resolver.adapters} - {item.lang.split("-")[0]})
    languages = [item.lang, *rng.sample(others, 2)]
    rng.shuffle(languages)
    return tuple(languages)


def bench_langid_short(split: str = "heldout", threshold: float = 0.6) -> list[Figures]:
    """Every routing and detector on the chosen split: routed right = the adapter of the text's own
    language (a fallback to English is right only for English)."""
    resolver = LanguageResolver(COLBERT_XM_LANGUAGES)
    plausible = LanguageDetector(resolver, threshold, "plausible")
    strict = LanguageDetector(resolver, threshold, "strict")

    def routed_before(item: Item) -> str:  # the routing before: py3langid's guess, the fallback below 0.6
        found = plausible.guess(item.text)
        return resolver.fallback if found.confidence < threshold else (resolver.lookup(found.language) or "")

    def routed(detector: LanguageDetector, hints: Callable[[Item], Hints] = lambda _: NO_HINTS) -> Route:
        return lambda item: detector.resolve(detector.detect(item.text, hints(item))).adapter

    def guessed(detect: Callable[[str], Detection]) -> Route:
        return lambda item: resolver.lookup(detect(item.text).language) or ""

    routings: dict[str, Route] = {
        "plausible (default): script, then py3langid and fastText pooled; unsure guesses kept if the script agrees": (
            routed(plausible)
        ),
        f"strict: script, then py3langid and fastText pooled; below {threshold} to the fallback": routed(strict),
        f"before: py3langid alone; below {threshold} to the fallback": routed_before,
        "plausible, Accept-Language naming the text's language (a right prior)": routed(
            plausible, lambda item: Hints(preferred=(item.lang,))
        ),
        "plausible, Accept-Language en for every text (a wrong prior, but for English)": routed(
            plausible, lambda _: Hints(preferred=("en",))
        ),
        "plausible, a tenant's prior: its documents in the text's language and two others, in a random order": routed(
            plausible, lambda item: Hints(prior=_tenant_languages(item, resolver))
        ),
        "detector: py3langid alone, its best guess": guessed(plausible.guess),
        "detector: fastText (lid.176, compressed) alone, its best guess": guessed(plausible.fasttext_guess),
        "detector: script, then py3langid and fastText pooled, the best guess": guessed(plausible.detect),
    }
    items = load(split)
    out = []
    for name, route in routings.items():
        right: dict[str, list[bool]] = defaultdict(list)
        by_language: dict[str, list[bool]] = defaultdict(list)
        start = time.perf_counter()
        for item in items:
            ok = route(item) == resolver.lookup(item.lang)
            for key in (item.band, f"{item.genre} {item.band}", item.genre, "all"):
                right[key].append(ok)
            by_language[item.lang].append(ok)
        elapsed = time.perf_counter() - start
        out.append(
            Figures(
                name=name,
                accuracy={key: sum(v) / len(v) for key, v in sorted(right.items()) if v},
                per_language={lang: sum(v) / len(v) for lang, v in sorted(by_language.items())},
                ms_per_text=1000 * elapsed / max(len(items), 1),
            )
        )
    return out
