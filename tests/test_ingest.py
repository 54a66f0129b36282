"""Ingestion in process: sources, validation and rejects, chunking, change detection, deletes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from xmsearch.ingest.chunking import Chunker
from xmsearch.ingest.documents import Document, Reject, limits
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.sources import read_folder, read_jsonl, read_path
from xmsearch.retriever import Encoder, InvalidInputError
from xmsearch.retriever.index.schema import Source
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings


def _lines(*records: object) -> io.BytesIO:
    return io.BytesIO("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode() + b"\n")


CONTEXT = {"max_chars": 1000, "max_metadata_bytes": 100}


def test_jsonl_good_and_bad_records_each_reported_with_their_line() -> None:
    records = list(
        read_jsonl(
            _lines(
                {"id": "a", "text": "hello"},
                "{not json",
                "",
                "[1, 2]",
                {"text": "no id"},
                {"id": 7, "text": "numeric id"},
                {"id": "e", "text": "  "},
                {"id": "f", "text": "x" * 1001},
                {"id": "g", "text": "ok", "metadata": {"k": "v" * 200}},
                {"id": "h", "text": "ok", "colour": "red"},
                {"id": "i", "text": "ok", "metadata": [1]},
                {"id": "j", "text": "fine", "language": "fr", "tenant": "t", "metadata": {"n": 1}},
            ),
            "in.jsonl",
            CONTEXT,
        )
    )
    docs = [r for r in records if isinstance(r, Document)]
    rejects = {r.location: r.reason for r in records if isinstance(r, Reject)}
    assert [d.id for d in docs] == ["a", "j"]
    assert rejects["line 2"].startswith("invalid JSON")
    assert "line 3" not in rejects  # blank lines are skipped
    assert rejects["line 4"] == "a record is a JSON object, not list"
    assert rejects["line 5"] == "id: Field required"
    assert rejects["line 6"].startswith("id: Input should be a valid string")
    assert "text is empty or only whitespace" in rejects["line 7"]
    assert "text is 1001 characters, over the limit of 1000" in rejects["line 8"]
    assert "metadata is" in rejects["line 9"] and "over the limit of 100" in rejects["line 9"]
    assert rejects["line 10"].startswith("colour: Extra inputs are not permitted")
    assert rejects["line 11"].startswith("metadata: Input should be a valid dictionary")


def test_invalid_utf8_line_is_rejected() -> None:
    records = list(read_jsonl(io.BytesIO(b'{"id": "a", "text": "\xff\xfe"}\n'), "in", CONTEXT))
    assert isinstance(records[0], Reject) and "invalid JSON" in records[0].reason


def test_folder_source(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub" / "b.md").write_text("# second")
    (tmp_path / "c.bin").write_bytes(b"\x00")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00")
    records = list(read_folder(tmp_path, CONTEXT))
    assert [(r.id, r.text) for r in records if isinstance(r, Document)] == [
        ("a.txt", "first"),
        ("sub/b.md", "# second"),
    ]
    assert [r.location for r in records if isinstance(r, Reject)] == ["bad.txt"]


def test_extra_fields_are_refused_or_kept_as_metadata() -> None:
    line = b'{"id": "a", "text": "t", "title": "T", "url": "u", "metadata": {"url": "mine"}}\n'
    [refused] = list(read_jsonl(io.BytesIO(line), "x", CONTEXT))
    assert isinstance(refused, Reject) and "title: Extra inputs are not permitted" in refused.reason
    [kept] = list(read_jsonl(io.BytesIO(line), "x", {**CONTEXT, "extra_fields": "metadata"}))
    assert isinstance(kept, Document) and kept.metadata == {"title": "T", "url": "mine"}


def test_a_path_is_checked_at_once_and_a_text_file_is_one_document(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"missing\.jsonl: no such file or folder"):
        read_path(str(tmp_path / "missing.jsonl"), CONTEXT)  # before anything is iterated
    (tmp_path / "notes.md").write_text('# A title\n{"not": "json lines"}\n')
    [doc] = list(read_path(str(tmp_path / "notes.md"), CONTEXT))
    assert isinstance(doc, Document) and doc.id == "notes.md" and doc.text.startswith("# A title")


def test_chunks_fit_the_model_and_prefer_sentence_ends(encoder: Encoder) -> None:
    chunker = Chunker(encoder.tokenizer, overlap=8)
    text = " ".join(f"Le moulin numéro {i} tourne." for i in range(60))
    chunks = chunker.split(text)
    assert len(chunks) > 3 and [c.number for c in chunks] == list(range(len(chunks)))
    lengths = [len(r) for r in encoder.tokenizer.document_rows([c.text for c in chunks])]
    assert max(lengths) <= encoder.spec.doc_maxlen
    assert sum(c.text.endswith(".") for c in chunks) >= len(chunks) - 1
    assert chunker.split(text) == chunks  # stable
    assert chunker.split("court") == [chunks[0].__class__(0, "court")]


def test_a_long_text_ending_in_white_space_is_chunked(encoder: Encoder) -> None:
    """Trailing white space leaves an empty piece at the end of the text (it once raised IndexError)."""
    chunker = Chunker(encoder.tokenizer, overlap=4)
    text = "Der Fluss fließt an der Mühle vorbei. " * 40 + "\n"
    chunks = chunker.split(text)
    assert len(chunks) > 1 and chunks[-1].text.endswith("vorbei.")


@pytest.fixture
def indexer(tmp_path: Path, detecting_encoder: Encoder) -> Iterator[Indexer]:
    settings = Settings(device="cpu", store="edge", data_dir=tmp_path, ingest_batch_size=3, chunk_overlap=4)
    ing = Indexer.from_settings(settings, detecting_encoder)
    yield ing
    ing.close()


DOCS = [
    {"id": "river", "text": "The river flows past the old mill. Children play on the bridge.", "language": "en"},
    {"id": "pass", "text": "Comment renouveler mon passeport avant de voyager à l'étranger ?"},
    {
        "id": "long",
        "text": " ".join(f"Der Fluss Nummer {i} fließt an der Mühle vorbei." for i in range(40)),
        "tenant": "t",
    },
]


def _ingest(ing: Indexer, *records: object) -> tuple[dict[str, int], list[Reject]]:
    rejects: list[Reject] = []
    job = ing.ingest(read_jsonl(_lines(*records), "in", limits(ing.settings)), on_reject=rejects.append)
    assert job.status == "done"
    return job.as_dict()["counts"], rejects  # type: ignore[return-value]


def test_ingest_then_reingest_encodes_nothing(indexer: Indexer) -> None:
    counts, rejects = _ingest(indexer, *DOCS, "{broken")
    chunks = indexer.store.count()
    assert counts["accepted"] == 3 and counts["rejected"] == 1 and counts["encoded"] == counts["written"] == chunks > 3
    assert rejects[0].location == "line 4" and counts["processed"] == 3
    again, _ = _ingest(indexer, *DOCS, DOCS[0])  # a later copy supersedes the first: both are finished
    assert again["processed"] == again["accepted"] == 4
    assert again["encoded"] == 0 and again["written"] == 0
    assert again["skipped_unchanged"] in (3, 4)  # 3 when both copies fall in one batch (the later one wins)
    assert indexer.store.count() == chunks


def test_changed_document_reencodes_only_its_chunks(indexer: Indexer) -> None:
    _ingest(indexer, *DOCS)
    changed = {**DOCS[0], "text": "The river flows past the new mill. Children play on the bridge."}
    counts, _ = _ingest(indexer, changed, DOCS[1], DOCS[2])
    assert counts["encoded"] == 1 and counts["skipped_unchanged"] == 2
    assert indexer.store.fetch("river")[0].text.startswith("The river flows past the new mill")


def test_shorter_document_loses_its_stale_chunks(indexer: Indexer) -> None:
    _ingest(indexer, *DOCS)
    before = len(indexer.store.fetch("long", "t"))
    shorter = {**DOCS[2], "text": " ".join(f"Der Fluss Nummer {i} fließt an der Mühle vorbei." for i in range(5))}
    counts, _ = _ingest(indexer, shorter)
    after = indexer.store.fetch("long", "t")
    assert len(after) < before and counts["deleted"] == before - len(after)
    assert [c.chunk for c in after] == list(range(len(after)))


def test_languages_per_chunk_given_or_detected(indexer: Indexer) -> None:
    _ingest(indexer, *DOCS)
    assert indexer.store.fetch("river")[0].language == "en"
    assert indexer.store.fetch("pass")[0].language == "fr"  # detected
    assert {c.language for c in indexer.store.fetch("long", "t")} == {"de"}
    assert indexer.store.fetch("long", "t")[0].tenant == "t"


def test_a_document_the_policy_refuses_fails_alone(tiny_checkpoint: Path) -> None:
    settings = Settings(
        model=str(tiny_checkpoint), device="cpu", store="local", data_dir=Path(":memory:"), unknown_language="error"
    )
    ing = Indexer.from_settings(settings)
    counts, rejects = _ingest(ing, {"id": "x", "text": "habari", "language": "sw"}, DOCS[0])
    assert counts["failed"] == 1 and counts["written"] == 1
    assert rejects[0].location == "document 'x'" and "'sw' has no adapter" in rejects[0].reason
    ing.close()


def test_delete_then_search(indexer: Indexer, detecting_encoder: Encoder, tmp_path: Path) -> None:
    _ingest(indexer, *DOCS)
    indexer.delete(["long", "no-such-doc"], "t")
    assert indexer.store.fetch("long", "t") == []
    indexer.close()
    retriever = Retriever.from_settings(indexer.settings, detecting_encoder)
    hits = retriever.search("old mill", k=10, language="en").hits
    assert {h.document_id for h in hits} == {"river", "pass"}
    retriever.close()


def test_a_document_that_cannot_be_written_fails_alone(indexer: Indexer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded path halves a failing batch until the culprit stands alone: it is failed with the
    reason, and every other document of the batch goes in."""
    real = indexer.store.upsert

    def upsert(points: list[object]) -> None:
        if any(p.document_id == "poison" for p in points):  # type: ignore[attr-defined]
            raise RuntimeError("the engine refused a payload")
        real(points)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer.store, "upsert", upsert)
    docs = [{"id": f"ok{i}", "text": f"Fine document {i}.", "language": "en"} for i in range(5)]
    counts, rejects = _ingest(indexer, *docs[:2], {"id": "poison", "text": "Bad one.", "language": "en"}, *docs[2:])
    assert counts["failed"] == 1 and counts["processed"] == counts["accepted"] == 6 and counts["written"] == 5
    assert counts["encoded"] == 5  # counted once each, for what went in (failed attempts are not counted)
    assert [(r.location, r.key) for r in rejects] == [("document 'poison'", (None, "poison"))]
    assert "could not be indexed: RuntimeError: the engine refused a payload" in rejects[0].reason
    assert indexer.store.count() == 5


MULTILINGUAL = [  # long documents (many overlapping chunks), exotic white space and scripts, unnormalised
    "  Der Rhein fließt durch Basel.\r\n\r\n"
    + " ".join(f"Satz {i}: die Mühle dreht sich am Fluss." for i in range(60)),
    "\t北京是中国的首都。" * 80 + "\n",
    " ".join(f"هذه الجملة رقم {i} عن النهر والطاحونة." for i in range(50)) + "\u200f",
    "Cafe\u0301 re\u0301sume\u0301 — naïve façade… 🚣‍♀️🌊 " * 40 + "\n\n\n",
    "Москва — столица России.\nПеревод:\u00a0«река» " * 50,
    "short one",
]


@pytest.mark.parametrize("store", ["edge", "local"])
def test_each_document_s_exact_text_is_rebuilt_from_the_store(
    tmp_path: Path, detecting_encoder: Encoder, store: str
) -> None:
    """Chunk texts overlap and are trimmed: the first chunk keeps the document's text as ingested, byte
    for byte, and a change anywhere in a long document rewrites it."""
    settings = Settings(device="cpu", store=store, data_dir=tmp_path, chunk_overlap=8)
    ing = Indexer.from_settings(settings, detecting_encoder)
    try:
        docs = [
            {"id": f"d{i}", "text": text, "tenant": "t" if i % 2 else None, "language": "de" if i == 0 else None}
            for i, text in enumerate(MULTILINGUAL)
        ]
        _ingest(ing, *docs)
        stored = {d["id"]: ing.store.fetch(d["id"], d["tenant"], vectors=False) for d in docs}
        assert sum(len(chunks) > 5 for chunks in stored.values()) >= 4  # long documents, many chunks
        for doc in docs:
            first = stored[doc["id"]][0]
            assert first.source is not None and first.source.text.encode() == doc["text"].encode(), doc["id"]
            assert first.source.language == doc.get("language")
            assert all(chunk.source is None for chunk in stored[doc["id"]][1:])  # kept once
        changed = {**docs[0], "text": docs[0]["text"][:-1] + "!"}  # the last chunk changes, and so the first
        counts, _ = _ingest(ing, changed)
        assert counts["encoded"] == 2 and ing.store.fetch("d0", vectors=False)[0].source == Source(
            changed["text"], "de"
        )
    finally:
        ing.close()
