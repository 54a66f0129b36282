"""Where documents come from: JSON Lines (a file or standard input, streamed in constant memory) and a
folder of .txt and .md files (id = relative path). Every record becomes a Document or a Reject."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xmsearch.ingest.documents import Document, Reject, parse

FOLDER_SUFFIXES = (".txt", ".md")


def read_jsonl(stream: IO[bytes], source: str, context: dict[str, int]) -> Iterator[Document | Reject]:
    """One record per line; blank lines are skipped; bad lines are rejected with their number."""
    for number, raw in enumerate(stream, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {number}"
        try:
            data = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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


def read_folder(folder: Path, context: dict[str, int]) -> Iterator[Document | Reject]:
    """Every .txt and .md file below `folder`, in path order, as a document whose id is its path."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES):
        relative = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            yield Reject(str(folder), relative, f"cannot read as UTF-8 text: {exc}", "")
            continue
        yield parse({"id": relative, "text": text}, str(folder), relative, context)


def read_path(path: str, context: dict[str, int]) -> Iterator[Document | Reject]:
    """`-` for standard input (JSON Lines), a folder, or a JSON Lines file."""
    if path == "-":
        yield from read_jsonl(sys.stdin.buffer, "stdin", context)
        return
    target = Path(path)
    if target.is_dir():
        yield from read_folder(target, context)
        return
    with target.open("rb") as stream:
        yield from read_jsonl(stream, str(target), context)
