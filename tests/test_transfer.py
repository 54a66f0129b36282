"""Moving a collection between stores without encoding again (`collections copy`, `snapshot`,
`restore`): every point, vector and payload arrives, searches rank the same, the codebook goes
along, a stopped copy goes on where it was, a copy that does not match its source is not swapped in."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from xmsearch.cli import app
from xmsearch.ingest.documents import Document
from xmsearch.ingest.pipeline import Indexer
from xmsearch.retriever import Encoder
from xmsearch.retriever.index import transfer
from xmsearch.retriever.index.schema import IndexSpec, Page, Point
from xmsearch.retriever.index.stores import Store, base, make_store, open_as_built, settings_at
from xmsearch.retriever.index.transfer import CopyVerificationError, copy_collection
from xmsearch.settings import Settings

WORDS = "river mill bridge passport travel search engine token query document children summer evening".split()  # noqa: SIM905


def _documents(n: int) -> list[Document]:
    rng = np.random.default_rng(5)
    return [
        Document(
            id=f"d{i}", text=" ".join(rng.choice(WORDS, size=int(rng.integers(4, 12)))), language="en",
            tenant=("acme", None)[i % 2], metadata={"n": i},
        )
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def source_settings(tmp_path: Path, encoder: Encoder, tiny_checkpoint: Path) -> Iterator[Settings]:
    """An Edge collection of 40 documents with a complete centroid codebook."""
    settings = Settings(
        model=str(tiny_checkpoint), device="cpu", store="edge", data_dir=tmp_path / "source", collection="docs",
        detect_language=False, first_stage="on", first_stage_encoding="centroids", first_stage_min_points=30,
        first_stage_centroids=32, first_stage_candidates=10_000, first_stage_probe=32,
    )  # fmt: skip
    indexer = Indexer.from_settings(settings, encoder)
    indexer.ingest(_documents(40))
    indexer.wait()
    indexer.close()
    yield settings


def _points(store: Store) -> dict[tuple[str | None, str, int], Point]:
    out, cursor = {}, None
    while True:
        page, cursor = store.points(cursor, 7)
        out.update({(p.tenant, p.document_id, p.chunk): p for p in page})
        if cursor is None:
            return out


def _same_points(a: Store, b: Store) -> None:
    mine, theirs = _points(a), _points(b)
    assert mine.keys() == theirs.keys() and len(mine) == 40
    for key, point in mine.items():
        other = theirs[key]
        assert point.payload() == other.payload()
        assert np.allclose(point.vectors, other.vectors, atol=1e-3)  # float16 on Edge, float32 in local mode
        assert point.first_stage is not None and other.first_stage is not None  # centroids, identical
        assert np.array_equal(point.first_stage.indices, other.first_stage.indices)  # type: ignore[union-attr]
        assert point.pooled is not None and other.pooled is not None  # pooled passages, carried as stored
        assert point.pooled.shape == other.pooled.shape and np.allclose(point.pooled, other.pooled, atol=1e-3)


def test_a_copy_to_another_store_and_back_keeps_every_point_and_ranks_the_same(
    source_settings: Settings, tmp_path: Path
) -> None:
    there = settings_at(source_settings, f"local:{tmp_path / 'there'}")
    source = open_as_built(source_settings)
    assert source.spec.pooled
    try:
        with pytest.MonkeyPatch.context() as patch:  # a copy writes the pooled passages it read
            patch.setattr(base, "pool_passage", lambda *_: pytest.fail("a copy pooled a passage again"))
            report = copy_collection(source, lambda spec: make_store(there, spec), tmp_path / "state.json")
    finally:
        source.close()
    assert (report.points, report.documents, report.version, report.replaced) == (40, 40, "docs-v1", None)
    assert report.searches_compared == 40 and report.codebook is not None  # exact and first-stage, 20 each
    assert not (tmp_path / "state.json").exists()
    source, copy = open_as_built(source_settings), open_as_built(there)
    try:
        assert copy.recorded("docs-v1") == source.recorded(source.current_version() or "")
        assert copy.codebook_record() is not None and copy.codebook() is not None
        assert copy.codebook().id == source.codebook().id and copy.codebook().complete  # type: ignore[union-attr]
        _same_points(source, copy)
        query = np.asarray(next(iter(_points(source).values())).vectors[:8])
        page = Page(k=5, group=True)
        want, got = source.search([query], page, ()), copy.search([query], page, ())
        assert [h.document for h in want[0]] == [h.document for h in got[0]]
    finally:
        source.close()
        copy.close()
    # and back, over what the source holds: a new version there, the old one kept
    back = Settings(**{**source_settings.model_dump(), "data_dir": source_settings.data_dir})
    copy = open_as_built(there)
    try:
        report = copy_collection(copy, lambda spec: make_store(back, spec))
    finally:
        copy.close()
    assert (report.version, report.replaced, report.points) == ("docs-v2", "docs-v1", 40)
    first, second = (open_as_built(there), open_as_built(back))
    try:
        _same_points(first, second)
    finally:
        first.close()
        second.close()


def test_a_stopped_copy_goes_on_where_it_was(
    source_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "SCROLL_PAGE", 16)
    there = settings_at(source_settings, f"edge:{tmp_path / 'there'}")
    state = tmp_path / "copies" / "state.json"
    seen: list[int] = []

    def stop_after_two_pages(done: int, total: int) -> None:
        seen.append(done)
        if done == 32:
            raise KeyboardInterrupt

    source = open_as_built(source_settings)
    try:
        with pytest.raises(KeyboardInterrupt):
            copy_collection(source, lambda spec: make_store(there, spec), state, stop_after_two_pages)
        assert json.loads(state.read_text())["copied"] == 32
        assert make_store(there, IndexSpec("", 1)).current_version() is None  # nothing searchable there yet
        report = copy_collection(source, lambda spec: make_store(there, spec), state, lambda d, t: seen.append(d))
    finally:
        source.close()
    assert seen == [16, 32, 40] and report.resumed_at == 32 and report.points == 40
    assert report.version == "docs-v1"  # the same version went on: none was started afresh
    first, second = open_as_built(source_settings), open_as_built(there)
    try:
        _same_points(first, second)
    finally:
        first.close()
        second.close()


def test_a_copy_that_does_not_match_its_source_is_not_searched(
    source_settings: Settings, tmp_path: Path, encoder: Encoder
) -> None:
    there = settings_at(source_settings, f"local:{tmp_path / 'there'}")
    source = open_as_built(source_settings)
    extra = _points(source)[(None, "d1", 0)]

    def write_meanwhile(done: int, total: int) -> None:  # a write to the source the copy does not follow
        source.upsert([Point(**{**extra.__dict__, "document_id": "late"})])

    try:
        with pytest.raises(CopyVerificationError, match="the source changed during the copy"):
            copy_collection(source, lambda spec: make_store(there, spec), tmp_path / "state.json", write_meanwhile)
    finally:
        source.close()
    assert not (tmp_path / "state.json").exists()  # the next run starts afresh
    target = make_store(there, IndexSpec("", 1))
    try:
        assert target.current_version() is None and target.versions() == []  # nothing searched, nothing kept
    finally:
        target.close()


def test_a_copy_whose_pooled_passages_differ_is_not_searched(
    source_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    there = settings_at(source_settings, f"local:{tmp_path / 'there'}")
    source = open_as_built(source_settings)
    read, pages = source.points, []

    def corrupted(*args: Any) -> tuple[list[Point], Any]:  # the first page the copy writes: one pooled passage off
        page, after = read(*args)
        pages.append(page)
        if len(pages) == 1 and page[0].pooled is not None:
            page[0] = dataclasses.replace(page[0], pooled=-page[0].pooled)
        return page, after

    monkeypatch.setattr(source, "points", corrupted)
    try:
        with pytest.raises(CopyVerificationError, match="its pooled passage in the copy is not the source's"):
            copy_collection(source, lambda spec: make_store(there, spec))
    finally:
        source.close()
    target = make_store(there, IndexSpec("", 1))
    try:
        assert target.current_version() is None  # nothing searched
    finally:
        target.close()


def test_snapshot_and_restore_through_the_cli(source_settings: Settings, tmp_path: Path) -> None:
    env = {"XMSEARCH_DATA_DIR": str(source_settings.data_dir), "XMSEARCH_COLLECTION": "docs"}
    archive = tmp_path / "backups" / "docs.tar.gz"
    runner = CliRunner()
    saved = runner.invoke(app, ["collections", "snapshot", str(archive), "--json"], env=env)
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout)["points"] == 40 and archive.is_file()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "docs/CURRENT" in names and "docs/docs-v1.json" in names and not any(n.endswith(".lock") for n in names)
    elsewhere = {**env, "XMSEARCH_DATA_DIR": str(tmp_path / "restored"), "XMSEARCH_STORE": "local"}
    restored = runner.invoke(app, ["collections", "restore", str(archive)], env=elsewhere)
    assert restored.exit_code == 0, restored.output
    assert "40 points of 40 documents" in restored.stdout and "searches ranked the same" in restored.stdout
    status = runner.invoke(app, ["status", "--json"], env=elsewhere)
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["documents"] == 40
    bad = tmp_path / "not-a-snapshot.tar"
    bad.write_text("hello")
    refused = runner.invoke(app, ["collections", "restore", str(bad)], env=elsewhere)
    assert "is not a snapshot xmsearch can read (not a tar archive" in str(refused.exception)


def test_copy_through_the_cli_names_its_mistakes(source_settings: Settings, tmp_path: Path) -> None:
    env = {"XMSEARCH_DATA_DIR": str(source_settings.data_dir), "XMSEARCH_COLLECTION": "docs"}
    runner = CliRunner()
    both = runner.invoke(app, ["collections", "copy", "--to", "edge:x", "--from", "edge:y"], env=env)
    assert "give one of --to WHERE" in str(both.exception)
    nothing = runner.invoke(app, ["collections", "copy", "--from", f"edge:{tmp_path / 'empty'}"], env=env)
    assert "has nothing to copy" in str(nothing.exception)
    itself = runner.invoke(app, ["collections", "copy", "--to", f"edge:{source_settings.data_dir}"], env=env)
    assert "the source and the target are the same collection" in str(itself.exception)
    done = runner.invoke(app, ["collections", "copy", "--to", f"local:{tmp_path / 'there'}"], env=env)
    assert done.exit_code == 0 and "as docs-v1" in done.stdout, done.output


def test_a_server_version_is_created_with_the_shards_and_replicas_the_settings_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(qdrant_url="http://qdrant.invalid:6333", qdrant_shards=6, qdrant_replication_factor=2)
    store = make_store(settings, IndexSpec(model_id="m@abc", dim=16))
    created: dict[str, object] = {}
    monkeypatch.setattr(store, "versions", lambda: [])
    monkeypatch.setattr(store.client, "create_collection", lambda name, **options: created.update(options))
    monkeypatch.setattr(store.client, "create_payload_index", lambda *a, **k: None)
    assert store.create_version() == "xmsearch-v1"
    assert created["shard_number"] == 6 and created["replication_factor"] == 2


def test_a_copy_to_a_server_over_rest_and_back(source_settings: Settings, qdrant_server: str, tmp_path: Path) -> None:
    """Through qdrant-client's REST code, as to a real server: sparse centroid vectors, the codebook
    collection and the version's record survive the trip."""
    env = {"XMSEARCH_DATA_DIR": str(source_settings.data_dir), "XMSEARCH_COLLECTION": "docs"}
    runner = CliRunner()
    there = runner.invoke(app, ["collections", "copy", "--to", qdrant_server, "--json"], env=env)
    assert there.exit_code == 0, there.output
    report = json.loads(there.stdout)
    assert report["points"] == 40 and report["searches_compared"] == 40 and report["codebook"]
    back = {**env, "XMSEARCH_DATA_DIR": str(tmp_path / "back")}
    again = runner.invoke(app, ["collections", "copy", "--from", qdrant_server, "--json"], env=back)
    assert again.exit_code == 0, again.output
    first, second = open_as_built(source_settings), open_as_built(settings_at(source_settings, str(tmp_path / "back")))
    try:
        _same_points(first, second)
        assert second.codebook() is not None and second.codebook().id == report["codebook"]  # type: ignore[union-attr]
    finally:
        first.close()
        second.close()
