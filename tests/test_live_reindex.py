"""Reindexing inside the process that serves (`xmsearch serve`'s Service): searches go on and never
mix models, writes made meanwhile reach the new version, a cancel drops what was built, a rollback
brings the old model back, and the API's reindex routes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient

from tests.test_api import api_settings, as_, error
from xmsearch.api import create_app
from xmsearch.api.service import Service
from xmsearch.ingest.chunking import Chunker
from xmsearch.ingest.documents import Document
from xmsearch.ingest.export import Export
from xmsearch.ingest.pipeline import Indexer
from xmsearch.ingest.reindex import Live, Reindex, ReindexCancelledError, rollback
from xmsearch.ingest.reindex_state import ReindexState
from xmsearch.retriever import follow
from xmsearch.retriever.components import Components, index_spec
from xmsearch.retriever.index.schema import IndexSpec
from xmsearch.retriever.index.stores.qdrant import QdrantStore
from xmsearch.retriever.model.encoder import Encoder
from xmsearch.retriever.model.tiny import make_tiny
from xmsearch.retriever.search import Retriever, SearchResult
from xmsearch.settings import Settings

WORDS = [
    "river",
    "mill",
    "bridge",
    "Fluss",
    "Mühle",
    "Brücke",
    "rivière",
    "moulin",
    "pont",
    "bread",
    "four",
    "Basel",
    "Rhein",
]
DOCS = [
    {"id": f"d{i}", "text": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40 + 9 * i)), "language": "en"}
    | ({"tenant": "acme"} if i % 3 == 0 else {})
    for i in range(24)
]
QUERIES = ["river mill", "Brücke Basel", "pain four pont"]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny-b") / "ckpt", seed=1)  # same shape, other weights


def _service(model: Path, data: Path, store: str = "edge") -> Service:
    settings = Settings(model=str(model), data_dir=data, device="cpu", ingest_batch_size=8, store=store)  # type: ignore[arg-type]
    service = Service.start(settings)
    service.ingestor.wait(service.ingestor.submit(DOCS), timeout=120)
    return service


def _answer(result: SearchResult) -> tuple[tuple[str, float], ...]:
    return tuple((hit.document_id, round(hit.score, 4)) for hit in result.hits)


def _answers(retriever: Retriever) -> dict[str, tuple[tuple[str, float], ...]]:
    return {q: _answer(retriever.search(q, 5, "en")) for q in QUERIES}


class Searching:
    """Threads that search back to back until stopped, keeping every answer and every failure."""

    def __init__(self, retriever: Retriever, threads: int) -> None:
        self.retriever, self.answers, self.failures = retriever, list[tuple[str, Any]](), list[BaseException]()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            for query in QUERIES:
                try:
                    self.answers.append((query, _answer(self.retriever.search(query, 5, "en"))))
                except BaseException as exc:  # any failure fails the test
                    self.failures.append(exc)

    def finish(self, more: int) -> None:
        """After `more` answers still (searches go on after the swap), stop."""
        seen = len(self.answers)
        while len(self.answers) < seen + more and not self.failures:
            time.sleep(0.01)
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def check(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """No failure; each answer wholly the old model's on the old version, or the new one's."""
        assert not self.failures, self.failures[:3]
        assert all(old[q] != new[q] for q in QUERIES)  # the two models answer differently
        mixed = [(q, a) for q, a in self.answers if a not in (old[q], new[q])]
        assert not mixed, mixed[:3]
        assert any(a == old[q] for q, a in self.answers) and any(a == new[q] for q, a in self.answers)


@pytest.mark.parametrize("store", ["edge", "local"])
def test_searches_during_a_live_reindex_never_fail_and_never_mix_models(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, store: str
) -> None:
    service = _service(tiny_checkpoint, tmp_path, store)
    try:
        old = _answers(service.retriever)
        searching = Searching(service.retriever, 2)
        service.start_reindex({"model": str(other_model)})
        assert service.reindexing is not None
        reindex, running = service.reindexing
        running.join(120)
        searching.finish(20)
        assert reindex.state.step == "done", reindex.state.error
        searching.check(old, _answers(service.retriever))
        assert service.retriever.encoder.spec.path == other_model.resolve()
    finally:
        service.close()


@pytest.mark.parametrize("store", ["edge", "local"])
def test_writes_made_during_a_live_reindex_reach_the_new_version(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, store: str
) -> None:
    service = _service(tiny_checkpoint, tmp_path, store)
    ingestor = service.ingestor
    latest = {(d.get("tenant"), d["id"]): d for d in DOCS}
    late: list[str] = []

    def write(documents: list[dict[str, Any]], deleted: list[tuple[str | None, str]]) -> list[str]:
        jobs = [ingestor.submit(documents)] if documents else []
        jobs += [ingestor.delete([document_id], tenant) for tenant, document_id in deleted]
        latest.update({(d.get("tenant"), d["id"]): d for d in documents})
        for key in deleted:
            del latest[key]
        return jobs

    def meanwhile(state: ReindexState) -> None:
        if state.step == "copying" and state.processed and not late:  # done in the version searched, mid-copy
            late.append("copying")
            changed = {**DOCS[1], "text": "changed while copying: river mill " * 30}
            added = {"id": "new1", "text": "added while copying, Mühle Brücke", "language": "de"}
            for job in write([changed, added], [(DOCS[3].get("tenant"), DOCS[3]["id"]), (None, "d2")]):
                ingestor.wait(job, timeout=60)
        if state.step == "catching_up" and late == ["copying"]:  # before the pause, or after the swap
            late.extend(write([{**DOCS[4], "text": "changed late"}, {"id": "new2", "text": "added late"}], []))

    try:
        reindex = Reindex(service.settings, {"model": str(other_model)}, live=service._live("a reindex"),
                          on_change=meanwhile)  # fmt: skip
        done = reindex.run()
        for job in late[1:]:
            assert ingestor.wait(job, timeout=60)["status"] == "done"
        assert done.version == "xmsearch-v2" and reindex.state.caught_up >= 4
        store = service.retriever.store
        assert store.current_version() == "xmsearch-v2"
        key = lambda record: (record.get("tenant") or "", record["id"])  # noqa: E731
        assert sorted(Export(store).records(), key=key) == sorted(latest.values(), key=key)
        chunker = Chunker(service.retriever.encoder.tokenizer, service.retriever.components.settings.chunk_overlap)
        assert store.chunk_counts() == Counter({k: len(chunker.split(d["text"])) for k, d in latest.items()})
        model_id = service.retriever.encoder.spec.model_id
        written_by = {point.model_id for tenant, document_id in latest for point in store.fetch(document_id, tenant)}
        assert written_by == {model_id}  # every point, by the new model
    finally:
        service.close()


def test_a_cancelled_live_reindex_drops_its_version_and_a_rollback_brings_the_old_model_back(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path
) -> None:
    service = _service(tiny_checkpoint, tmp_path)
    try:
        old = _answers(service.retriever)

        def cancel_mid_copy(state: ReindexState) -> None:
            if state.step == "copying" and state.processed:
                reindex.cancel()

        reindex = Reindex(service.settings, {"model": str(other_model)}, live=service._live("a reindex"),
                          on_change=cancel_mid_copy)  # fmt: skip
        with pytest.raises(ReindexCancelledError):
            reindex.run()
        assert reindex.state.step == "cancelled"
        assert [v["version"] for v in service.retriever.collections()] == ["xmsearch-v1"]
        assert _answers(service.retriever) == old  # searches never left the old version
        service.start_reindex({"model": str(other_model)})
        assert service.reindexing is not None
        service.reindexing[1].join(120)
        assert service.reindex_state().step == "done"  # type: ignore[union-attr]
        assert _answers(service.retriever) != old
        ingestor = service.ingestor  # written to v2 by the new model, then kept by the rollback
        ingestor.wait(ingestor.submit([{"id": "since", "text": "written between the swap and the rollback"}]), 60)
        ingestor.wait(ingestor.delete(["d1"]), timeout=60)
        assert service.rollback().rollback
        assert service.reindexing is not None
        service.reindexing[1].join(120)
        back = service.reindex_state()
        assert back is not None and back.step == "done", back
        assert (back.previous, back.version) == ("xmsearch-v2", "xmsearch-v1")  # the cancelled one's name was free
        assert service.retriever.encoder.spec.path == tiny_checkpoint.resolve()  # the old model, on the old version
        store, model_id = service.retriever.store, service.retriever.encoder.spec.model_id
        assert store.current_version() == "xmsearch-v1" and store.fetch("d1") == []  # nothing written since is lost
        assert [p.model_id for p in store.fetch("since")] == [model_id] and back.removed == 1
        ingestor.wait(ingestor.submit([{"id": "after", "text": "written after the rollback"}]), timeout=60)
        assert store.fetch("after")[0].model_id == model_id
    finally:
        service.close()


def test_the_api_reindexes_follows_and_rolls_back(
    tmp_path: Path, detecting_encoder: Encoder, other_model: Path
) -> None:
    app = create_app(api_settings(tmp_path, model=str(detecting_encoder.spec.path)), detecting_encoder)
    with TestClient(app) as client:
        docs = [{"id": d["id"], "text": d["text"][:900]} for d in DOCS[:5]]
        assert client.post("/documents?wait=true", json={"documents": docs}, headers=as_("admin")).status_code == 200
        assert error(client.get("/reindex", headers=as_("admin")))[:2] == (404, "no_reindex")
        assert error(client.post("/reindex", json={}, headers=as_("acme")))[:2] == (403, "admin_required")
        unknown = client.post("/reindex", json={"settings": {"api_port": "9"}}, headers=as_("admin"))
        assert error(unknown)[:2] == (422, "invalid_input") and "api_port" in error(unknown)[2]
        missing = client.post("/reindex", json={"model": str(tmp_path / "nowhere")}, headers=as_("admin"))
        assert error(missing)[:2] == (422, "invalid_model")
        assert error(client.delete("/reindex", headers=as_("admin")))[:2] == (422, "invalid_input")
        started = client.post("/reindex", json={"model": str(other_model)}, headers=as_("admin"))
        assert started.status_code == 202 and started.json()["changes"] == {"model": str(other_model)}
        again = client.post("/reindex", json={"settings": {"chunk_overlap": "8"}}, headers=as_("admin"))
        assert again.status_code == 202 or error(again)[:2] == (409, "reindex_running")
        for _ in range(600):
            state = client.get("/reindex", headers=as_("admin")).json()
            if not state["running"]:
                break
            time.sleep(0.1)
        assert state["step"] == "done" and state["processed"] == 5 and state["documents"] == {"": 5}, state
        hits = client.post("/search", json={"query": "river mill", "language": "en"}, headers=as_("admin")).json()
        assert hits["hits"]
        back = client.post("/reindex/rollback", headers=as_("admin"))
        assert back.status_code == 202 and back.json()["rollback"], back.json()
        while (state := client.get("/reindex", headers=as_("admin")).json())["running"]:
            time.sleep(0.1)
        assert state["step"] == "done" and state["version"] != state["previous"], state
        versions = client.get("/collections", headers=as_("admin")).json()["versions"]
        assert [v["version"] for v in versions if v["current"]] == [state["version"]]


def _shared_settings(model: Path, data: Path) -> Settings:
    return Settings(model=str(model), data_dir=data, device="cpu", ingest_batch_size=8, store="local")  # type: ignore[arg-type]


def _on(client: QdrantClient, settings: Settings, model: Path, owner: bool) -> Components:
    """What one process holds on a Qdrant that others share (one client stands for the server)."""
    encoder = Encoder.from_pretrained(model, settings)
    store = QdrantStore(client, settings.collection, index_spec(encoder.spec, settings, None), "local", 0, owner)
    return Components(settings, encoder, store, None)


def test_a_retriever_of_another_process_follows_the_alias_without_a_restart(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes on one Qdrant (one client here): one reindexes to another model and swaps; the
    other's Retriever keeps answering from the old version with the old model while it loads the new
    one, then from the new version: every answer wholly one or the other, none failing."""
    monkeypatch.setattr(follow, "FOLLOW_EVERY_S", 0.05)
    client = QdrantClient(location=":memory:")
    settings = _shared_settings(tiny_checkpoint, tmp_path)
    components = lambda owner: _on(client, settings, tiny_checkpoint, owner)  # noqa: E731

    writer = Indexer(components(True), settings)
    writer.ingest(Document.model_validate(d) for d in DOCS)
    follower = Retriever(components(False), follow=True)
    old = _answers(follower)
    searching = Searching(follower, 1)
    try:
        live = Live(writer, lambda parts, swap: (swap(), writer.use(parts)))  # type: ignore[func-returns-value]
        Reindex(settings, {"model": str(other_model)}, live=live).run()
        deadline = time.monotonic() + 60
        while follower.encoder.spec.path != other_model.resolve():
            assert time.monotonic() < deadline and not searching.failures, searching.failures[:1]
            time.sleep(0.05)
    finally:
        searching.finish(10)
    searching.check(old, _answers(follower))
    writer.close()


def test_a_writer_of_another_process_follows_the_alias_with_the_model_that_built_it(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer on a shared Qdrant (a worker, say) while another process reindexes to another model and
    swaps, then rolls back: each of its writes goes to the version the alias names, encoded by the model
    that built that version; it never writes one model's vectors into another's version."""
    monkeypatch.setattr(follow, "FOLLOW_EVERY_S", 0.0)
    client = QdrantClient(location=":memory:")
    settings = _shared_settings(tiny_checkpoint, tmp_path)
    worker = Indexer(_on(client, settings, tiny_checkpoint, True), settings, follow=True)
    worker.ingest(Document.model_validate(d) for d in DOCS)
    old_model = worker.encoder.spec.model_id
    mover = Indexer(_on(client, settings, tiny_checkpoint, False), settings)  # the process that reindexes
    live = Live(mover, lambda parts, swap: (swap(), mover.use(parts)))  # type: ignore[func-returns-value]
    Reindex(settings, {"model": str(other_model)}, live=live).run()

    def written(document_id: str, version: str) -> list[str]:
        view = mover.store.version_store(version, IndexSpec.from_record(mover.store.recorded(version) or {}))
        return [point.model_id for point in view.fetch(document_id, vectors=False)]

    worker.ingest([Document(id="after-swap", text="written after the swap", language="en")])
    new_model = worker.encoder.spec.model_id
    assert new_model != old_model and written("after-swap", "xmsearch-v2") == [new_model]
    assert written("after-swap", "xmsearch-v1") == []
    rollback(settings, live)
    rejects: list[Any] = []
    worker.ingest([Document(id="after-rollback", text="written after the rollback", language="en")], rejects.append)
    assert not rejects, rejects
    assert worker.encoder.spec.model_id == old_model
    assert written("after-rollback", "xmsearch-v1") == [old_model] and written("after-rollback", "xmsearch-v2") == []
    worker.delete(["d1"])  # a delete follows too: from the version searched
    assert written("d1", "xmsearch-v1") == [] and len(written("d1", "xmsearch-v2")) > 0
    worker.close()


def test_a_reindex_on_a_shared_qdrant_follows_every_worker_s_writes_and_moves_them_all(
    tiny_checkpoint: Path, other_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: Any
) -> None:
    """Workers on one Qdrant (one client here) write all along while one of them reindexes to another
    model: each says through Redis what it wrote, and waits while the reindex pauses writes for its
    last step. After the swap, the new version holds exactly the latest state, and every point in it,
    written before or after the swap, is the new model's."""
    import redis

    from xmsearch.workers.reindexing import SharedWrites, WriterHooks

    monkeypatch.setattr(follow, "FOLLOW_EVERY_S", 0.5)
    client = QdrantClient(location=":memory:")
    settings = _shared_settings(tiny_checkpoint, tmp_path)
    broker = redis.Redis.from_url(redis_server.url, decode_responses=True)
    workers = [Indexer(_on(client, settings, tiny_checkpoint, n == 0), settings, follow=True) for n in range(3)]
    for worker in workers:
        WriterHooks(broker, settings.collection, worker)
    workers[0].ingest(Document.model_validate(d) for d in DOCS)
    old_model = workers[0].encoder.spec.model_id
    latest = {(d.get("tenant"), str(d["id"])): d for d in DOCS}
    done, lock = threading.Event(), threading.Lock()
    refused: list[Any] = []

    def write(n: int) -> None:  # worker n changes its own documents and adds new ones, until told
        for round_ in range(10_000):
            if done.is_set():
                return
            own = [d for d in DOCS if int(str(d["id"])[1:]) % 2 == n]
            docs = [
                {**own[round_ % len(own)], "text": f"worker {n} round {round_}"},
                {"id": f"w{n}-{round_}", "text": "new"},
            ]
            workers[n].ingest((Document.model_validate(d) for d in docs), refused.append)
            with lock:
                latest.update({(d.get("tenant"), str(d["id"])): d for d in docs})

    writers = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    for thread in writers:
        thread.start()
    try:
        live = Live(workers[2], lambda parts, swap: swap(), SharedWrites(broker, settings.collection))
        reindex = Reindex(settings, {"model": str(other_model)}, live=live)
        reindex.run()
        time.sleep(1.0)  # writes after the swap too
    finally:
        done.set()
        for thread in writers:
            thread.join()
    assert reindex.state.step == "done" and reindex.state.caught_up > 0 and not refused, refused
    store = workers[2].store
    assert store.current_version() == "xmsearch-v2"
    key = lambda record: (record.get("tenant"), str(record["id"]))  # noqa: E731
    assert {key(r): r for r in Export(store).records()} == latest  # every write, before, during and after
    new_model = workers[0].encoder.spec.model_id
    assert new_model == workers[1].encoder.spec.model_id != old_model  # each writer moved to the new model
    written_by = {p.model_id for tenant, document_id in latest for p in store.fetch(document_id, tenant)}
    assert written_by == {new_model}
    workers[0].close()
