"""Reindexing in process: a new model (and other settings) into a new version, verified, swapped;
resumed after a crash without encoding a chunk twice; searches never mix models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_ingest import MULTILINGUAL
from xmsearch.ingest.documents import Document
from xmsearch.ingest.export import Export
from xmsearch.ingest.job import Job
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex import reindex
from xmsearch.ingest.reindex_state import ReindexState
from xmsearch.retriever.components import Components, index_store
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.index.schema import StoreMismatchError
from xmsearch.retriever.index.stores import Store
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.model.tiny import make_tiny
from xmsearch.retriever.search import Retriever
from xmsearch.settings import Settings

DOCS = [
    {"id": f"d{i}", "text": text}
    | ({"tenant": "acme"} if i % 2 else {})
    | ({"language": "de"} if i == 0 else {})
    | ({"metadata": {"n": i}} if i % 3 == 0 else {})
    for i, text in enumerate(MULTILINGUAL)
]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny-b") / "ckpt", seed=1)  # same shape, other weights


def _settings(model: Path, data: Path, **extra: object) -> Settings:
    return Settings(model=str(model), data_dir=data, device="cpu", ingest_batch_size=8, **extra)  # type: ignore[arg-type]


def _ingest(settings: Settings) -> Job:
    indexer = Indexer.from_settings(settings)
    try:
        return indexer.ingest([Document(**d) for d in DOCS])  # type: ignore[arg-type]
    finally:
        indexer.close()


def _exported(settings: Settings) -> list[dict[str, object]]:
    store = index_store(settings)
    store.open(create=False)
    try:
        return sorted(Export(store).records(), key=lambda r: str(r["id"]))
    finally:
        store.close()


@pytest.mark.parametrize("store", ["edge", "local"])
def test_a_reindex_builds_verifies_and_swaps_and_searches_never_mix_models(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, store: str
) -> None:
    old = _settings(tiny_checkpoint, tmp_path, store=store)
    chunks = _ingest(old).counts.written

    done = reindex(old, {"model": str(other_model), "vector_datatype": "float32", "chunk_overlap": "16"})
    assert (done.previous, done.version, done.resumed) == ("xmsearch-v1", "xmsearch-v2", False)
    assert done.documents == {"": 3, "acme": 3} and done.job.counts.failed == 0
    new = _settings(other_model, tmp_path, store=store, vector_datatype="float32", chunk_overlap=16)
    assert _exported(new) == sorted(DOCS, key=lambda d: str(d["id"]))  # every document, as ingested
    retriever = Retriever.from_settings(new)
    try:
        assert retriever.search("Der Rhein fließt durch Basel", 3).hits  # the new model on the new version
        versions = retriever.collections()
    finally:
        retriever.close()
    assert [(v["version"], v["current"]) for v in versions] == [("xmsearch-v1", False), ("xmsearch-v2", True)]
    assert versions[1]["built_with"]["model"] == str(other_model) and versions[1]["built_with"]["chunk_overlap"] == 16
    assert versions[1]["built_with"]["datatype"] == "float32"
    assert versions[0]["points"] == chunks  # the old version is untouched, for a rollback
    again = reindex(old, {"chunk_overlap": "24"})  # from what v2 was built with, not from the settings
    assert again.version == "xmsearch-v3"
    follower = Retriever.from_settings(old)  # settings that still name the old model follow the collection
    try:
        assert follower.encoder.spec.model_id == versions[1]["built_with"]["model_id"]
        assert follower.search("Der Rhein", 3).hits
        latest = follower.collections()[-1]["built_with"]
        assert (latest["model"], latest["datatype"], latest["chunk_overlap"]) == (str(other_model), "float32", 24)
    finally:
        follower.close()
    old_encoder = Encoder.from_pretrained(tiny_checkpoint, old)
    stale = Retriever.from_settings(old, old_encoder)  # a caller that insists on the old model
    try:
        with pytest.raises(StoreMismatchError):  # queries of the old model never meet the new vectors
            stale.search("Der Rhein", 3)
    finally:
        stale.close()


def test_an_interrupted_reindex_resumes_without_encoding_a_chunk_twice(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path
) -> None:
    old = _settings(tiny_checkpoint, tmp_path)
    _ingest(old)
    changes = {"model": str(other_model)}
    encoded: list[int] = []

    def crash(state: ReindexState) -> None:
        if state.step == "copying" and state.processed:
            encoded.append(state.encoded)
            if len(encoded) == 3:
                raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError, match="killed mid-way"):
        reindex(old, changes, on_change=crash)
    first = encoded[-1]
    done = reindex(old, changes)
    assert done.resumed and done.version == "xmsearch-v2"
    retriever = Retriever.from_settings(_settings(other_model, tmp_path))
    try:
        total = sum(v["points"] for v in retriever.collections() if v["current"])
    finally:
        retriever.close()
    assert 0 < first < total and first + done.job.counts.encoded == total  # each chunk encoded once


def test_unknown_settings_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot change api_port"):
        reindex(_settings(tiny_checkpoint, tmp_path), {"api_port": "9"})


def test_the_cli_reindexes_then_rolls_back(tiny_checkpoint: Path, other_model: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from xmsearch.cli import app

    runner = CliRunner()
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    old = {"XMSEARCH_MODEL": str(tiny_checkpoint), "XMSEARCH_DATA_DIR": str(tmp_path / "data")}
    new = {**old, "XMSEARCH_MODEL": str(other_model), "XMSEARCH_VECTOR_DATATYPE": "float32"}

    def run(env: dict[str, str], *args: str) -> object:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.stdout) if "--json" in args else result.stdout

    run(old, "ingest", str(source))
    started = run(old, "reindex", "start", "--model", str(other_model), "--set", "vector_datatype=float32", "--json")
    assert started["version"] == "xmsearch-v2" and started["processed"] == len(DOCS)  # type: ignore[index]
    assert run(new, "search", "Basel", "--json")["hits"]  # type: ignore[index]
    back = run(new, "reindex", "rollback", "--json")
    assert (back["version"], back["previous"], back["rollback"]) == ("xmsearch-v1", "xmsearch-v2", True)  # type: ignore[index]
    assert run(old, "search", "Basel", "--json")["hits"]  # type: ignore[index]
    assert run(new, "search", "Basel", "--json")["hits"]  # type: ignore[index]  # it follows the rollback too
    for args, message in (
        (["reindex", "rollback"], "nothing to roll back to"),
        (["reindex", "start", "--set", "nonsense"], "--set takes KEY=VALUE"),
        (["reindex", "start", "--set", "quantization=fuzzy"], "XMSEARCH_QUANTIZATION='fuzzy': Input should be"),
    ):
        refused = runner.invoke(app, args, env=old)
        assert refused.exit_code != 0 and message in str(refused.exception), (args, refused.exception)


def test_a_named_source_replaces_the_collection_and_a_bad_one_swaps_nothing(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    import json

    from xmsearch.ingest.reindex import VerificationError

    settings = _settings(tiny_checkpoint, tmp_path / "data")
    _ingest(settings)
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS[:2]), encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(fewer.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    with pytest.raises(VerificationError, match=r"1 record.* rejected .*line 3.*nothing swapped"):
        reindex(settings, {"chunk_overlap": "8"}, source_path=str(broken))
    assert len(_exported(settings)) == len(DOCS)  # still the old version, whole
    done = reindex(settings, {"chunk_overlap": "8"}, source_path=str(fewer))
    assert (done.version, done.resumed) == ("xmsearch-v2", True)  # the refused run's version, same settings
    assert done.documents == {"": 1, "acme": 1}
    assert _exported(settings) == sorted(DOCS[:2], key=lambda d: str(d["id"]))


def test_a_second_reindex_at_once_is_refused_naming_the_first(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import os

    from xmsearch.retriever.index.stores import StoreLockedError

    settings = _settings(tiny_checkpoint, tmp_path)
    _ingest(settings)
    running = index_store(settings)  # what a running reindex (or `serve`) holds: the store, locked
    running.open(create=False)
    try:
        with pytest.raises(StoreLockedError, match=f"in use by process {os.getpid()}"):
            reindex(settings, {"chunk_overlap": "8"})
    finally:
        running.close()
    retriever = Retriever.from_settings(settings)
    try:
        assert [v["version"] for v in retriever.collections()] == ["xmsearch-v1"]  # nothing was built
    finally:
        retriever.close()


def test_writes_after_a_reindex_rewrite_the_same_points(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A version a reindex built names its points as the collection does: a document changed after
    the swap replaces its chunks instead of adding a second copy (local mode addressed a version's
    points by the version's name before)."""
    settings = _settings(tiny_checkpoint, tmp_path, store="local")
    _ingest(settings)
    reindex(settings, {"chunk_overlap": "16"})
    changed = {**DOCS[0], "text": DOCS[0]["text"] + " und noch ein Satz"}
    indexer = Indexer.from_settings(settings)
    try:
        indexer.ingest([Document(**changed)])  # type: ignore[arg-type]
        chunks = indexer.store.chunk_counts()
        expected = {
            (d.get("tenant"), d["id"]): len(indexer.chunker.split(str(d["text"]))) for d in [changed, *DOCS[1:]]
        }
    finally:
        indexer.close()
    assert chunks == expected


def test_the_same_model_loaded_by_another_name_encodes_nothing_again(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change detection depends on the weights, not on the name they were loaded by (a relative path,
    the absolute one a version records): a rollback once encoded every chunk again for that."""
    monkeypatch.chdir(tiny_checkpoint.parent)
    first = _ingest(_settings(Path(tiny_checkpoint.name), tmp_path / "data", store="local"))
    indexer = Indexer(Components.load(_settings(tiny_checkpoint.resolve(), tmp_path / "data", store="local")),
                      _settings(tiny_checkpoint, tmp_path / "data"))  # fmt: skip
    try:
        assert indexer.encoder.spec.model_id != Encoder.from_pretrained(Path(tiny_checkpoint.name)).spec.model_id
        again = indexer.ingest([Document(**d) for d in DOCS])  # type: ignore[arg-type]
    finally:
        indexer.close()
    assert first.counts.encoded > 0 and again.counts.encoded == 0 and again.counts.skipped_unchanged == len(DOCS)


def test_a_model_of_another_dimension_is_a_new_version(tiny_checkpoint: Path, tmp_path: Path) -> None:
    narrow = make_tiny(tmp_path / "narrow", dim=8, seed=2)
    settings = _settings(tiny_checkpoint, tmp_path / "data")
    _ingest(settings)
    done = reindex(settings, {"model": str(narrow)})
    assert done.version == "xmsearch-v2" and done.documents == {"": 3, "acme": 3}
    retriever = Retriever.from_settings(settings)  # follows: the narrow model, on its version
    try:
        assert retriever.encoder.spec.dim == 8 and retriever.search("Der Rhein fließt durch Basel", 3).hits
        assert [v["built_with"]["dim"] for v in retriever.collections()] == [16, 8]
    finally:
        retriever.close()


def test_the_sample_searches_before_the_swap_go_through_the_first_stage(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(
        tiny_checkpoint, tmp_path, first_stage="on", first_stage_encoding="centroids", first_stage_min_points=2,
        first_stage_centroids=4, first_stage_probe=2,
    )  # fmt: skip
    _ingest(settings)
    searched: list[tuple[bool, int, bool]] = []
    search = Store.search

    def spy(store: Store, *args: object, **kwargs: object) -> object:
        searched.append((args[3] is not None, int(args[4]), args[5] is not None))  # type: ignore[call-overload]
        return search(store, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "search", spy)
    done = reindex(settings, {"model": str(other_model)})
    assert done.version == "xmsearch-v2"
    assert searched and all(first and candidates > 0 and shortlist for first, candidates, shortlist in searched)
