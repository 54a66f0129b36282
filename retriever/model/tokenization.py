"""ColBERT tokenisation of queries and documents, exactly as colbert-ai does it.

Legacy convention (colbert-ai <= 0.2.20, what ColBERT-XM was trained with): prefix ". ", tokenise
(queries to exactly query_maxlen, documents to at most doc_maxlen), then overwrite position 1 with the
marker. Current convention (0.2.21+): tokenise to max_length - 1 and insert the marker after `<s>`.
Queries then turn every pad into `<mask>` (the query augmentation). A document keeps the rows whose id
is neither pad nor in the punctuation skiplist.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tokenizers import Encoding, Tokenizer

from xmsearch.retriever.errors import CheckpointError
from xmsearch.retriever.model.checkpoint import TOKENIZER_FILE, CheckpointSpec

Convention = Literal["legacy", "current"]
LEGACY_PREFIX = ". "


@dataclass(frozen=True)
class TokenBatch:
    """Padded ids, attention mask and keep mask (rows that become output vectors), all (n, length)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    keep: np.ndarray


@dataclass(frozen=True)
class Tokenized:
    """Marked ids per text (truncated as the reference truncates) and each text's length in tokens
    before truncation (marker and special tokens included)."""

    rows: list[list[int]]
    lengths: list[int]


class ColbertTokenizer:
    """Turns texts into the id matrices the reference feeds to the model."""

    def __init__(self, spec: CheckpointSpec, convention: Convention = "legacy") -> None:
        self.spec = spec
        self.convention = convention
        try:
            self.tokenizer = Tokenizer.from_file(str(spec.path / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise CheckpointError(f"cannot read {spec.path / TOKENIZER_FILE}: {exc}") from exc
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.pad_id = self._special("<pad>")
        self.mask_id = self._special("<mask>")
        unk_id = self._special("<unk>")
        # Markers absent from the vocabulary ("[unused0]" in XLM-R) become <unk>, as in the reference.
        self.query_marker_id = self._id_or(spec.query_marker, unk_id)
        self.doc_marker_id = self._id_or(spec.doc_marker, unk_id)
        self.skiplist = np.array(sorted(self._skiplist()) if spec.mask_punctuation else [], dtype=np.int64)
        self._specials = self.tokenizer.num_special_tokens_to_add(is_pair=False)

    def _special(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"{self.spec.path / TOKENIZER_FILE} has no {token} token")
        return token_id

    def _id_or(self, token: str, default: int) -> int:
        token_id = self.tokenizer.token_to_id(token)
        return default if token_id is None else token_id

    def _skiplist(self) -> set[int]:
        """First id of each punctuation character encoded alone, as colbert-ai builds it."""
        ids = set()
        for symbol in string.punctuation:
            encoded = self.tokenizer.encode(symbol, add_special_tokens=False).ids
            if encoded:
                ids.add(encoded[0])
        return ids

    def _encode(self, texts: list[str], max_length: int) -> Tokenized:
        """Ids with special tokens, truncated to max_length as the Hugging Face tokenizer truncates, and
        each text's length before truncation."""
        encodings: list[Encoding] = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        rows, lengths = [], []
        for encoding in encodings:
            lengths.append(len(encoding.ids) + self._specials)
            encoding.truncate(max_length - self._specials)
            rows.append(self.tokenizer.post_process(encoding).ids)
        return Tokenized(rows, lengths)

    def _marked(self, texts: list[str], max_length: int, marker: int) -> Tokenized:
        if self.convention == "legacy":
            out = self._encode([LEGACY_PREFIX + t for t in texts], max_length)
            for row in out.rows:
                row[1] = marker
            return out
        out = self._encode(texts, max_length - 1)
        return Tokenized([[row[0], marker, *row[1:]] for row in out.rows], [n + 1 for n in out.lengths])

    def queries(self, texts: list[str]) -> Tokenized:
        """Marked ids of each query, at most query_maxlen long, and its length before truncation."""
        return self._marked(texts, self.spec.query_maxlen, self.query_marker_id)

    def documents(self, texts: list[str]) -> Tokenized:
        """Marked ids of each document, at most doc_maxlen long (truncated as the reference does)."""
        return self._marked(texts, self.spec.doc_maxlen, self.doc_marker_id)

    def _pad(self, rows: list[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            attention[i, : len(row)] = 1
        return ids, attention

    def query_rows(self, texts: list[str]) -> list[list[int]]:
        """Marked ids of each query, at most query_maxlen long."""
        return self.queries(texts).rows

    def document_rows(self, texts: list[str]) -> list[list[int]]:
        """Marked ids of each document, at most doc_maxlen long (truncated as the reference does)."""
        return self.documents(texts).rows

    def query_batch(self, rows: list[list[int]]) -> TokenBatch:
        """Exactly query_maxlen ids per query, pads turned into <mask>; every row is kept."""
        ids, attention = self._pad(rows, self.spec.query_maxlen)
        ids[ids == self.pad_id] = self.mask_id
        if self.spec.attend_to_mask_tokens:
            attention[ids == self.mask_id] = 1
        return TokenBatch(ids, attention, np.ones(ids.shape, dtype=bool))

    def document_batch(self, rows: list[list[int]]) -> TokenBatch:
        """Documents padded to the longest; pads and skiplist ids are not kept."""
        ids, attention = self._pad(rows, max(len(r) for r in rows))
        keep = (ids != self.pad_id) & ~np.isin(ids, self.skiplist)
        return TokenBatch(ids, attention, keep)
