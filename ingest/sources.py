"""Where documents come from: JSON Lines (a file or standard input, streamed in constant memory) and a
folder of .txt and .md files (id = relative path). Every record becomes a Document or a Reject."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xmsearch.ingest.documents import Document, Limits, Reject, load_json, parse
from xmsearch.retriever.errors import InvalidInputError

FOLDER_SUFFIXES = (".txt", ".md")


def read_jsonl(stream: IO[bytes], source: str, context: Limits) -> Iterator[Document | Reject]:
    """One record per line; blank lines are skipped; bad lines are rejected with their number."""
    for number, raw in enumerate(stream, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {number}"
        try:
            data = load_json(line)
        except ValueError as exc:  # not JSON, not UTF-8, or nested too deeply
            yield Reject(source, where, f"invalid JSON: {exc}", line[:200].decode("utf-8", "replace"))
            continue
        if not isinstance(data, dict):
            yield Reject(
                source,
                where,
                f"a record is a JSON object, not {type(data).__name__}",
                line[:200].decode("utf-8", "replace"),
            )
            continue
        yield parse(data, source, where, context)


def read_text_file(path: Path, folder: Path, context: Limits) -> Document | Reject:
    """One .txt or .md file as a document whose id is its path relative to `folder`."""
    relative = path.relative_to(folder).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Reject(str(folder), relative, f"cannot read as UTF-8 text: {exc}", "")
    return parse({"id": relative, "text": text}, str(folder), relative, context)


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)


def read_folder(folder: Path, context: Limits) -> Iterator[Document | Reject]:
    """Every .txt and .md file below `folder`, in path order, as a document whose id is its path."""
    for path in _text_files(folder):
        yield read_text_file(path, folder, context)


def count_records(path: str) -> int | None:
    """How many records `read_path` will yield (None: standard input, not known in advance): for a
    progress bar's total. Reads a JSON Lines file once more, which costs far less than encoding it."""
    target = Path(path)
    if path == "-" or not target.exists():
        return None
    if target.is_dir():
        return len(_text_files(target))
    if target.suffix.lower() in FOLDER_SUFFIXES:
        return 1
    with target.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


def _read_jsonl_file(path: Path, context: Limits) -> Iterator[Document | Reject]:
    with path.open("rb") as stream:
        yield from read_jsonl(stream, str(path), context)


def read_path(path: str, context: Limits) -> Iterator[Document | Reject]:
    """`-` for standard input (JSON Lines), a folder, a .txt or .md file (one document, id = its
    name), or a JSON Lines file. The path is checked now (a missing one is an error at once, before
    any model loads); the records are read as the caller iterates."""
    if path == "-":
        return read_jsonl(sys.stdin.buffer, "stdin", context)
    target = Path(path)
    if target.is_dir():
        return read_folder(target, context)
    if not target.is_file():
        raise InvalidInputError(f"{path}: no such file or folder")
    if target.suffix.lower() in FOLDER_SUFFIXES:
        return iter([read_text_file(target, target.parent, context)])
    return _read_jsonl_file(target, context)
