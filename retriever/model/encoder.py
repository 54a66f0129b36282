"""The ColBERT-XM encoder: texts in any language to per-token multivectors, exact to the reference.

One forward pass per batch, each text with its own language adapter (XMOD `lang_ids`); documents are
sorted by length so that padding is small, and results come back in input order.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.metrics import ENCODER_BATCH, ENCODER_SECONDS
from xmsearch.retriever.model.checkpoint import CheckpointSpec, locate, read_spec
from xmsearch.retriever.model.langid import NO_HINTS, Hints, LanguageDetector
from xmsearch.retriever.model.languages import LanguageResolver, Resolution
from xmsearch.retriever.model.loading import LoadedModel, load_model, pick_device
from xmsearch.retriever.model.onnx_query import OnnxQueries, require_onnxruntime
from xmsearch.retriever.model.priority import SearchPriority
from xmsearch.retriever.model.query_runtime import auto_query_runtime, cache_key, unavailable
from xmsearch.retriever.model.tokenization import ColbertTokenizer, TokenBatch
from xmsearch.retriever.settings import EncoderSettings

log = logging.getLogger(__name__)

Languages = str | Sequence[str | None] | None
Kind = Literal["query", "document"]
PROBE_QUERY = "how do late interaction retrievers score a passage"  # what query_runtime=auto times


@dataclass(frozen=True)
class Prepared:
    """Texts checked, tokenised and given their adapters: what a forward pass needs, made once.
    `lengths` are the token counts before truncation."""

    kind: Kind
    rows: list[list[int]]
    lengths: list[int]
    languages: list[Resolution]

    @classmethod
    def join(cls, parts: Sequence[Prepared]) -> Prepared:
        """Several prepared batches of one kind as one (for a shared forward pass)."""
        return cls(
            parts[0].kind,
            [row for p in parts for row in p.rows],
            [n for p in parts for n in p.lengths],
            [lang for p in parts for lang in p.languages],
        )

    def split(self) -> list[Prepared]:
        """One prepared text each (to be joined again with other callers' in a shared pass)."""
        return [
            Prepared(self.kind, [r], [n], [lang])
            for r, n, lang in zip(self.rows, self.lengths, self.languages, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.rows)


class Encoder:
    """Encodes queries and documents with a ColBERT-XM checkpoint.

    >>> encoder = Encoder.from_pretrained("antoinelouis/colbert-xm")  # doctest: +SKIP
    >>> q = encoder.encode_queries(["wie alt ist der Eiffelturm"], languages=["de"])  # doctest: +SKIP
    >>> q[0].shape  # doctest: +SKIP
    (32, 128)
    """

    def __init__(self, spec: CheckpointSpec, loaded: LoadedModel, settings: EncoderSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.model = loaded
        self.tokenizer = ColbertTokenizer(spec, settings.marker_convention)
        self.languages = LanguageResolver(spec.languages, settings.unknown_language, settings.fallback_language)
        self._detector: LanguageDetector | None = None
        self.priority = SearchPriority(settings.search_priority_share, settings.background_batch_size)
        if settings.query_runtime not in ("torch", "auto"):
            require_onnxruntime()  # a missing package is said at the start, in every process
        self._onnx_queries: OnnxQueries | None = None  # loaded by the first query, or ready_queries
        self._queries_ready = False
        self._loading_queries = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path | None = None, settings: EncoderSettings | None = None
    ) -> Encoder:
        """Load a checkpoint from a local folder or the hub; unset arguments come from the settings."""
        settings = settings or EncoderSettings.from_env()
        name = str(name_or_path or settings.model)
        spec = read_spec(locate(name), name)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = pick_device(settings.device)
        return cls(spec, load_model(spec, device, settings.precision), settings)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def ready_queries(self) -> None:
        """Load what query forwards need besides the model: the ONNX Runtime session where queries run
        on it (exported the first time: about 25 s at the real size; with `auto`, both runtimes timed
        once per CPU and model: query_runtime.py). A process that searches calls it when it takes the
        encoder, so that no search waits for it; one that only encodes documents (a worker) never
        loads it."""
        self._query_session()

    @property
    def query_runtime(self) -> str:
        """What queries run on (torch, onnx or onnx-int8): with `auto`, as measured here (decided now
        if no query has decided it)."""
        session = self._query_session()
        return "torch" if session is None else session.variant

    def _query_session(self) -> OnnxQueries | None:
        """The session queries run on (None: torch), decided and loaded once."""
        if self._queries_ready or self.settings.query_runtime == "torch":
            return self._onnx_queries
        with self._loading_queries:
            if not self._queries_ready:
                self._onnx_queries, self._queries_ready = self._load_query_session(), True
                on = "torch" if self._onnx_queries is None else f"ONNX Runtime ({self._onnx_queries.variant})"
                log.info("queries of %s run on %s", self.spec.model_id, on)
            return self._onnx_queries

    def _load_query_session(self) -> OnnxQueries | None:
        """The session the settings' query runtime needs; with `auto`, the fp32 one where it measured
        faster than torch here (query_runtime.py), else none."""
        runtime, threads = self.settings.query_runtime, self.settings.threads or torch.get_num_threads()
        if runtime == "onnx" or runtime == "onnx-int8":
            return OnnxQueries(self.spec, self.model, runtime, threads)
        if (why := unavailable(self.model.device)) is not None:
            log.info("query runtime auto: torch (%s)", why)
            return None
        session = functools.cache(lambda: OnnxQueries(self.spec, self.model, "onnx", threads))
        batch = self.tokenizer.query_batch(self.tokenizer.queries([PROBE_QUERY]).rows)
        lang_ids = np.zeros(1, dtype=np.int64)

        def on_onnx() -> np.ndarray:
            ready = session()  # made (exported the first time) outside the timing: the warm-up round
            with self.priority.search():  # indexing in this process waits, as for a search
                return ready(batch.input_ids, batch.attention_mask, lang_ids)

        def on_torch() -> np.ndarray:
            with self.priority.search():
                return self._torch_vectors(batch, lang_ids)

        try:
            key = cache_key(self.model.backbone.config, self.spec.query_maxlen, self.model.dtype, threads)
            return session() if auto_query_runtime(key, on_torch, on_onnx) == "onnx" else None
        except Exception as exc:  # a speed-up that failed here (an import, an export, a session): torch runs
            log.warning("query runtime auto: torch (ONNX Runtime failed: %s: %s)", type(exc).__name__, exc)
            return None

    def encode_queries(self, texts: Sequence[str], languages: Languages = None) -> list[np.ndarray]:
        """One (query_maxlen, dim) float32 array per query: all rows kept (mask augmentation)."""
        return self.encode(self.prepare(texts, languages, "query"))

    def encode_documents(self, texts: Sequence[str], languages: Languages = None) -> list[np.ndarray]:
        """One (kept tokens, dim) float32 array per document: pad and punctuation rows dropped."""
        return self.encode(self.prepare(texts, languages, "document"))

    def prepare(
        self,
        texts: Sequence[str],
        languages: Languages,
        kind: Kind,
        what: str = "text",
        max_chars: int | None = None,
        hints: Hints | None = None,
    ) -> Prepared:
        """Check the texts (naming a bad one `what` i; refusing those over `max_chars`), tokenise them
        and resolve their adapters (`hints` for those detected), once: callers that need the lengths
        or the languages read them here and hand the result to `encode`."""
        texts = _check_texts(texts, what, max_chars)
        return self.tokenize(texts, self.resolve_languages(texts, languages, hints), kind)

    def tokenize(self, texts: list[str], languages: list[Resolution], kind: Kind) -> Prepared:
        """Texts already checked, with the adapters already resolved (e.g. chunks whose languages
        decided their content hashes), ready for `encode`."""
        tokenized = self.tokenizer.queries(texts) if kind == "query" else self.tokenizer.documents(texts)
        return Prepared(kind, tokenized.rows, tokenized.lengths, languages)

    def encode(self, prepared: Prepared) -> list[np.ndarray]:
        """The vectors of prepared texts, in their order."""
        to_batch = self.tokenizer.query_batch if prepared.kind == "query" else self.tokenizer.document_batch
        return self._encode(prepared.rows, prepared.languages, to_batch, prepared.kind)

    def resolve_languages(
        self, texts: Sequence[str], languages: Languages = None, hints: Hints | None = None
    ) -> list[Resolution]:
        """The adapter of each text: given (resolved through the checkpoint's languages), else detected
        (with what the caller knows: `hints`), else the fallback adapter."""
        wanted = _per_text(languages, len(texts))
        out: list[Resolution | None] = [None if code is None else self.languages.resolve(code) for code in wanted]
        unknown = [i for i, r in enumerate(out) if r is None]
        if unknown:
            for i, found in zip(unknown, self._detect([texts[i] for i in unknown], hints), strict=True):
                out[i] = found
        return [r for r in out if r is not None]

    def document_languages(
        self, text: str, chunks: Sequence[str], language: str | None, hints: Hints = NO_HINTS
    ) -> list[Resolution]:
        """The adapters of a document's chunks: its given language's, else the language detected on
        the whole document (`hints` where that is unsure; a long chunk surely in another language keeps
        its own), else the fallback."""
        if language is not None or not self.settings.detect_language:
            return self.resolve_languages(chunks, language)
        return self._language_detector().document(text, chunks, hints)

    def _detect(self, texts: list[str], hints: Hints | None) -> list[Resolution]:
        if not self.settings.detect_language:
            return [Resolution("", self.languages.fallback, fallback=True, source="fallback") for _ in texts]
        return self._language_detector()(texts, hints or NO_HINTS)

    def _language_detector(self) -> LanguageDetector:
        if self._detector is None:  # its model loads on first use
            settings = self.settings
            self._detector = LanguageDetector(self.languages, settings.langid_min_confidence, settings.langid_policy)
        return self._detector

    def _encode(
        self,
        rows: list[list[int]],
        langs: list[Resolution],
        to_batch: Callable[[list[list[int]]], TokenBatch],
        kind: str,
    ) -> list[np.ndarray]:
        lang_ids = np.array([self.languages.index[r.adapter] for r in langs], dtype=np.int64)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(rows)
        background = kind == "document"  # documents are encoded in steps that let searches go first
        done = 0
        while done < len(order):
            size = self.priority.pass_size(self.settings.batch_size) if background else self.settings.batch_size
            chunk, done = order[done : done + size], done + size
            ENCODER_BATCH.labels(kind).observe(len(chunk))
            with self.priority.background() if background else nullcontext(), ENCODER_SECONDS.labels(kind).time():
                vectors = self._forward(to_batch([rows[i] for i in chunk]), lang_ids[chunk], kind)
            for i, v in zip(chunk, vectors, strict=True):
                out[i] = v
        return out

    def _forward(self, batch: TokenBatch, lang_ids: np.ndarray, kind: str) -> list[np.ndarray]:
        onnx = self._query_session() if kind == "query" else None
        if onnx is None:
            unit = self._torch_vectors(batch, lang_ids)
        else:  # projected and normalised in its graph
            unit = onnx(batch.input_ids, batch.attention_mask, lang_ids)
        return [v[k] for v, k in zip(unit, batch.keep, strict=True)]

    @torch.inference_mode()
    def _torch_vectors(self, batch: TokenBatch, lang_ids: np.ndarray) -> np.ndarray:
        """The batch's unit vectors [batch, tokens, dim] from the torch backbone (dropped rows zero)."""
        device = self.model.device
        hidden = self.model.backbone(
            input_ids=torch.from_numpy(batch.input_ids).to(device),
            attention_mask=torch.from_numpy(batch.attention_mask).to(device),
            lang_ids=torch.from_numpy(lang_ids).to(device),
        ).last_hidden_state
        keep = torch.from_numpy(batch.keep).to(device)
        vectors = (hidden.float() @ self.model.projection.T) * keep.unsqueeze(-1)
        return torch.nn.functional.normalize(vectors, p=2, dim=2).cpu().numpy()


def _check_texts(texts: Sequence[str], what: str, max_chars: int | None) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError(f"{what}s must be a list of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"{what} {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise InvalidInputError(f"{what} {i} is empty or only whitespace")
        if max_chars is not None and len(text) > max_chars:
            raise InvalidInputError(f"{what} {i} is {len(text)} characters, over the limit of {max_chars}")
    return texts


def _per_text(languages: Languages, n: int) -> list[str | None]:
    if languages is None or isinstance(languages, str):
        return [languages] * n
    codes = list(languages)
    if len(codes) != n:
        raise InvalidInputError(f"{len(codes)} languages given for {n} texts")
    return codes
