"""Evaluation sets on disk, read into an `EvalSet`: a BEIR folder (corpus.jsonl, queries.jsonl,
qrels/<split>.tsv), mMARCO-style TSV files (collection.tsv, queries[.<split>].tsv, qrels[.<split>].tsv
in TREC format), or, by default, xmsearch-mini: the project's own small multilingual set. A record
that is not one is a one-line error naming its file and line."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmsearch.ingest.documents import Document, Limits, Reject, parse
from xmsearch.retriever.errors import InvalidInputError

BUNDLED = Path(__file__).parent / "data" / "xmsearch-mini"


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    language: str | None  # as the set gives it (None: detected when searched)


@dataclass(frozen=True)
class EvalSet:
    """A corpus, the judged queries and their judgements (query id -> document id -> grade)."""

    name: str
    corpus: list[Document | Reject]
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    digest: str  # of the files read and how: an index built from them is reused for the same only

    @property
    def documents(self) -> int:
        return sum(isinstance(record, Document) for record in self.corpus)


def load(folder: Path | None, limits: Limits, split: str = "test", language: str | None = None) -> EvalSet:
    """The set in `folder` (None: xmsearch-mini), judged on `split`; `language` is that of documents
    and queries whose files do not give one."""
    folder = folder or BUNDLED
    if (folder / "corpus.jsonl").is_file():
        corpus_file, queries_file, qrels_file = folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels"
        qrels_file /= f"{split}.tsv"
        read = _beir
    elif (folder / "collection.tsv").is_file():
        corpus_file = folder / "collection.tsv"
        queries_file, qrels_file = _split_file(folder, "queries", split), _split_file(folder, "qrels", split)
        read = _mmarco
    else:
        raise InvalidInputError(
            f"{folder}: neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) nor mMARCO files "
            f"(collection.tsv, queries.{split}.tsv, qrels.{split}.tsv)"
        )
    qrels = _qrels(qrels_file)
    corpus = [parse(record, corpus_file.name, where, limits) for where, record in read(corpus_file, language)]
    given = {where: record for where, record in read(queries_file, language)}
    queries = [Query(r["id"], r["text"], r.get("language")) for r in given.values() if r["id"] in qrels]
    missing = set(qrels) - {q.id for q in queries}
    if missing:
        raise InvalidInputError(
            f"{qrels_file}: judges {len(missing)} queries that {queries_file.name} lacks, e.g. {min(missing)}"
        )
    digest = hashlib.sha256(f"{language}\n".encode())
    with corpus_file.open("rb") as handle:
        digest.update(hashlib.file_digest(handle, "sha256").digest())
    return EvalSet(folder.name, corpus, queries, qrels, digest.hexdigest()[:16])


def _split_file(folder: Path, name: str, split: str) -> Path:
    own = folder / f"{name}.{split}.tsv"
    return own if own.is_file() else folder / f"{name}.tsv"


def numbered_lines(path: Path) -> Iterator[tuple[str, str]]:
    """The non-blank lines of a text file, each with where it is ("file.jsonl:12")."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield f"{path.name}:{number}", line.rstrip("\n")


def _beir(path: Path, language: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """BEIR records: {"_id", "text", "title"?, "language"?} -> documents' fields (the title first)."""
    for where, line in numbered_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("_id"), str | int):
            raise InvalidInputError(f'{where}: not a record with an "_id"')
        title, text = record.get("title") or "", record.get("text")
        if not isinstance(text, str) or not isinstance(title, str):
            raise InvalidInputError(f'{where}: "text" and "title" must be strings')
        fields = {"id": str(record["_id"]), "text": f"{title}\n{text}".strip() if title else text}
        yield where, {**fields, "language": record.get("language") or language}


def _mmarco(path: Path, language: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """mMARCO (and MS MARCO) lines: id <tab> text."""
    for where, line in numbered_lines(path):
        identifier, tab, text = line.partition("\t")
        if not tab:
            raise InvalidInputError(f"{where}: not 'id<TAB>text'")
        yield where, {"id": identifier.strip(), "text": text, "language": language}


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR's 'query-id corpus-id score' (with a header) or TREC's 'query-id 0 doc-id grade'."""
    qrels: dict[str, dict[str, int]] = {}
    for where, line in numbered_lines(path):
        parts = line.split()
        if len(parts) not in (3, 4):
            raise InvalidInputError(f"{where}: not 'query-id corpus-id score' nor 'query-id 0 doc-id grade'")
        query, document, grade = parts[0], parts[-2], parts[-1]
        try:
            value = int(grade)
        except ValueError:
            if where.endswith(":1"):
                continue  # the header
            raise InvalidInputError(f"{where}: the grade {grade!r} is not a whole number") from None
        qrels.setdefault(query, {})[document] = value
    if not qrels:
        raise InvalidInputError(f"{path}: no judgements")
    return qrels
