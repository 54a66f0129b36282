"""Chunking to the model's document length with the model's own tokenizer.

A document whose tokens fit one chunk is one chunk. A longer one is cut into chunks of at most the
model's budget (doc_maxlen less the special tokens and the marker), preferring to end a chunk at a
sentence end, else at a word start; consecutive chunks share about `overlap` tokens, starting at a
sentence or word start. The same text always gives the same chunks, so chunk numbers are stable.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from xmsearch.retriever.errors import CheckpointError
from xmsearch.retriever.model.tokenization import ColbertTokenizer

# A sentence ends at . ! ? (and their CJK and Devanagari forms) followed by space, or at a blank line.
SENTENCE_END = re.compile(r"(?<=[.!?。！？।؟])\s+|(?<=[。！？])|\n\s*\n")
SAFETY = 2  # tokens kept free: a chunk tokenised alone may differ by a piece at its edges


@dataclass(frozen=True)
class Chunk:
    number: int
    text: str


class Chunker:
    """Splits texts for one tokenizer (and so one model)."""

    def __init__(self, tokenizer: ColbertTokenizer, overlap: int) -> None:
        self.tokenizer = tokenizer.tokenizer
        overhead = len(tokenizer.document_rows(["a"])[0]) - len(
            self.tokenizer.encode("a", add_special_tokens=False).ids
        )
        self.budget = tokenizer.spec.doc_maxlen - overhead - SAFETY
        if self.budget < 8:
            raise CheckpointError(
                f"doc_maxlen {tokenizer.spec.doc_maxlen} of {tokenizer.spec.model_id} leaves no room for text"
            )
        self.overlap = min(overlap, self.budget // 2)

    def split(self, text: str) -> list[Chunk]:
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= self.budget:
            return [Chunk(0, text.strip())]
        starts = [start for start, _ in offsets]
        sentences = sorted({bisect.bisect_left(starts, m.start()) for m in SENTENCE_END.finditer(text)} - {0})
        # token offsets of `▁word` pieces begin at the space before the word; trailing white space
        # leaves an empty `▁` piece at the very end (offset len(text)), which starts no word
        words = [
            i for i, s in enumerate(starts) if i and s < len(text) and (text[s].isspace() or s > offsets[i - 1][1])
        ]
        chunks: list[Chunk] = []
        start, n = 0, len(offsets)
        while True:
            end = n if start + self.budget >= n else self._cut(start, sentences, words)
            chunks.append(Chunk(len(chunks), text[offsets[start][0] : offsets[end - 1][1]].strip()))
            if end >= n:
                return chunks
            start = self._resume(start, end, sentences, words)

    def _cut(self, start: int, sentences: list[int], words: list[int]) -> int:
        """The last sentence end (else word start) in the second half of the budget, else the budget."""
        low, high = start + self.budget // 2, start + self.budget
        for candidates in (sentences, words):
            i = bisect.bisect_right(candidates, high) - 1
            if i >= 0 and candidates[i] > low:
                return candidates[i]
        return high

    def _resume(self, start: int, end: int, sentences: list[int], words: list[int]) -> int:
        """Where the next chunk starts: a sentence (else word) start inside the overlap, else end - overlap."""
        low = max(end - self.overlap, start + 1)
        for candidates in (sentences, words):
            i = bisect.bisect_left(candidates, low)
            if i < len(candidates) and candidates[i] < end:
                return candidates[i]
        return low if self.overlap else end
