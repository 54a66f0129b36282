"""The `xmsearch` command: the demo (README command 1), model tools and benchmarks.

Human output by default, `--json` for scripts; errors are one line without a traceback unless
`--debug`. Exit codes: 0 ok; 1 an error that will happen again (bad input, bad checkpoint, bad
settings); 2 usage; 3 done, but some records were rejected; 4 a service did not answer (broker, Qdrant
server: retrying later may work).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ingest.job import COUNTS
from retriever.errors import TransientError, XmsearchError

if TYPE_CHECKING:
    from ingest.documents import Reject
    from xmsearch.ingestor import Ingestor

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multilingual late-interaction search.")
model_app = typer.Typer(no_args_is_help=True, help="Make and inspect ColBERT-XM checkpoints.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (ratios measured side by side).")
app.add_typer(model_app, name="model")
app.add_typer(bench_app, name="bench")
console = Console()
_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def demo(
    k: Annotated[int, typer.Option("--k", help="Hits shown per query.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """README command 1: index the bundled sample corpus (40 documents, 15 languages) on the embedded
    default, then answer the bundled sample queries (12 languages, most of them cross-lingual).

    Re-running it encodes nothing new (unchanged documents are skipped). Example:
      XMSEARCH_MODEL=./tiny-model xmsearch demo --k 5
    """
    from importlib import resources

    from ingest.documents import limits
    from ingest.sources import read_jsonl
    from retriever.components import Components
    from retriever.search import Retriever
    from retriever.settings import get_settings
    from xmsearch.ingestor import Ingestor

    settings = get_settings()
    data = resources.files("ingest").joinpath("data")
    with console.status("loading the model and indexing the sample corpus", spinner="dots"):
        components = Components.load(settings)
        ingestor = Ingestor.from_settings(settings, components=components)
    queries = json.loads(data.joinpath("sample_queries.json").read_text(encoding="utf-8"))
    try:
        with data.joinpath("sample_corpus.jsonl").open("rb") as corpus:
            records = read_jsonl(corpus, "sample_corpus.jsonl", limits(settings))
            job = ingestor.wait(ingestor.ingest(records, "demo"))
        texts, languages = [q["query"] for q in queries], [q["language"] for q in queries]
        results = Retriever(components).search_batch(texts, k=k, languages=languages)
    finally:
        ingestor.close()  # and the store the Retriever shares
    model_id = components.encoder.spec.model_id
    if as_json:
        out = [
            {"query": r.query, "language": r.language.adapter, "hits": [dataclasses.asdict(h) for h in r.hits]}
            for r in results
        ]
        print(json.dumps({"model": model_id, "job": _job_json(job), "results": out}))
        return
    console.print(
        f"[bold]{model_id}[/bold]: {job['accepted']} documents, {job['encoded']} chunks encoded, "
        f"{job['skipped_unchanged']} unchanged, in {settings.data_dir}"
    )
    for query, result in zip(queries, results, strict=True):
        found = sum(h.metadata.get("topic") == query["expect_topic"] for h in result.hits)
        console.print(
            f"\n[bold]{result.query}[/bold] ({result.language.adapter}; topic {query['expect_topic']}: {found}/{k})"
        )
        for hit in result.hits:
            topic = hit.metadata.get("topic", "")
            console.print(
                f"  {hit.score:6.2f}  {hit.document_id}#{hit.chunk} [{hit.language}, {topic}]  {hit.text[:70]}"
            )


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="A JSON Lines file, a folder of .txt/.md files, or - for stdin.")],
    rejects: Annotated[Path | None, typer.Option(help="Write rejected records here (JSON Lines).")] = None,
    wait: Annotated[bool, typer.Option(help="Distributed mode: wait until the workers are done.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Index documents, skipping unchanged ones: in this process (embedded mode), or as tasks for
    the workers when XMSEARCH_BROKER_URL is set (distributed mode; --no-wait returns at once).

    Each JSON line: {"id": "...", "text": "...", "language": "fr", "tenant": "...", "metadata": {...}};
    only id and text are required. Bad records are reported with their line and reason.

    Examples:
      xmsearch ingest docs.jsonl --rejects rejects.jsonl
      cat docs.jsonl | xmsearch ingest -
      xmsearch ingest ./notes/            (id = relative path)
    """
    from ingest.documents import limits
    from ingest.sources import read_path
    from retriever.settings import get_settings
    from xmsearch.ingestor import Ingestor

    settings = get_settings()
    records = read_path(path, limits(settings))
    with console.status("loading the model", spinner="dots"):  # embedded mode; distributed: at once
        ingestor = Ingestor.from_settings(settings, patient=True)
    reported = _Rejects(rejects)
    try:
        job_id = ingestor.ingest(records, path, reported)
        job = _follow(ingestor, job_id, as_json) if wait or ingestor.mode == "embedded" else ingestor.job(job_id)
    finally:
        ingestor.close()  # embedded: after the job is done
        reported.close()
    _print_job(job or {}, as_json)
    if not as_json:
        reported.show()
    if reported.count or (job or {}).get("failed"):
        raise typer.Exit(3)  # done, but some records were rejected or could not be indexed


class _Rejects:
    """Rejected records: all written to the --rejects file as they come, the first few kept to show."""

    SHOWN = 20

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.sink = path.open("w", encoding="utf-8") if path else None
        self.first: list[Reject] = []
        self.count = 0

    def __call__(self, reject: Reject) -> None:
        self.count += 1
        if len(self.first) < self.SHOWN:
            self.first.append(reject)
        if self.sink:
            self.sink.write(reject.as_json() + "\n")

    def close(self) -> None:
        if self.sink:
            self.sink.close()

    def show(self) -> None:
        for reject in self.first:
            console.print("[yellow]rejected[/yellow] " + escape(f"{reject.source} {reject.location}: {reject.reason}"))
        if self.count > len(self.first):
            console.print(
                f"... and {self.count - len(self.first)} more" + (f" (all in {self.path})" if self.path else "")
            )


def _follow(ingestor: Ingestor, job_id: str, quiet: bool) -> dict[str, Any]:
    """A live line of the job's counts (and a bar of its tasks, distributed) until it is done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    columns = (
        SpinnerColumn(),
        TextColumn(f"job {job_id[:8]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=quiet) as progress:
        bar = progress.add_task("", total=None)

        def show(job: dict[str, Any]) -> None:
            counts = f"{job['accepted']} documents, {job['encoded']} chunks encoded, {job['rejected']} rejected"
            progress.update(bar, completed=job.get("tasks_done", 0), total=job.get("tasks_sent"), description=counts)

        return ingestor.wait(job_id, on_progress=show, poll=0.2)


def _job_json(job: dict[str, Any]) -> dict[str, Any]:
    """The job as printed by --json: its fields, and its counts also grouped under `counts`."""
    return {**job, "counts": {name: job[name] for name in COUNTS}}


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(_job_json(job)))
        return
    shown = {k: v for k, v in job.items() if k not in ("errors", "source", "tenant") and v is not None}
    console.print(" ".join(f"{k.replace('_', ' ')}: {v}" for k, v in shown.items()))


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: the setting).")] = None,
) -> None:
    """Run a Celery worker that indexes the queued tasks (distributed mode).

    Example: XMSEARCH_BROKER_URL=redis://127.0.0.1:6379/0 xmsearch worker --concurrency 2
    """
    from retriever.settings import get_settings
    from workers.app import QUEUE, make_app, worker_processes

    settings = get_settings()
    celery_app = make_app(settings)
    n = worker_processes(settings, concurrency or settings.worker_concurrency)
    celery_app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            f"--concurrency={n}",
            "--pool=prefork",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def intake(
    consumer: Annotated[str | None, typer.Option(help="This consumer's name (default: a random one).")] = None,
    claim_idle: Annotated[float, typer.Option(help="Seconds before an unacknowledged entry is reclaimed.")] = 60.0,
) -> None:
    """Read documents that apps push to the Redis Stream `xmsearch:intake` and queue them for the workers.

    An app pushes:  XADD xmsearch:intake * document '{"id": "a", "text": "...", "language": "fr"}'
    Example: XMSEARCH_BROKER_URL=redis://127.0.0.1:6379/0 xmsearch intake --consumer intake-1
    """
    from retriever.settings import get_settings
    from workers.dispatch import TaskQueue
    from workers.intake import Intake

    Intake(TaskQueue(get_settings()), consumer, claim_idle).run()


@app.command()
def jobs(
    job_id: Annotated[str | None, typer.Argument(help="One job (default: the recent ones).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show ingestion jobs and their counts (distributed mode).

    Examples: xmsearch jobs    xmsearch jobs 3f2a... --json
    """
    from retriever.errors import InvalidInputError
    from retriever.settings import get_settings
    from workers.app import redis_client
    from workers.jobs import JobStore

    store = JobStore(redis_client(get_settings()))
    if job_id:
        job = store.get(job_id)
        if job is None:
            raise InvalidInputError(f"no job {job_id!r} (jobs are kept for 7 days)")
        _print_job(job, as_json)
        return
    recent = store.recent()
    if as_json:
        print(json.dumps(recent))
        return
    for job in recent:
        _print_job(job, False)


@app.command()
def dlq(
    action: Annotated[str, typer.Argument(help="list | requeue")] = "list",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the dead letters (with their reasons), or requeue those that can succeed again as new tasks
    of their jobs (the others are kept, and the reason is said).

    Examples: xmsearch dlq list --json    xmsearch dlq requeue
    """
    from retriever.errors import InvalidInputError
    from retriever.settings import get_settings
    from workers.dispatch import TaskQueue

    tasks = TaskQueue(get_settings())
    if action == "list":
        entries = tasks.dead.entries()
        if as_json:
            print(json.dumps(entries))
        for e in [] if as_json else entries:
            ids = ", ".join(d.get("id", "?") for d in e["documents"]) or ", ".join(e["document_ids"])
            console.print(escape(f"job {e['job_id']} ({e['task']}): [{ids}] {e['reason']}"))
        return
    if action != "requeue":
        raise InvalidInputError(f"dlq takes list or requeue, not {action!r}")
    done = tasks.requeue()
    console.print(f"requeued {done.requeued} dead letter(s)")
    for entry, why in done.kept:
        console.print(escape(f"kept: job {entry['job_id']}: {entry['reason']}: {why}"))


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids to remove (every chunk).")],
    tenant: Annotated[str | None, typer.Option(help="The documents' tenant (default: documents without one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Remove documents from the index: in this process, or through the workers when
    XMSEARCH_BROKER_URL is set (they own the store). Waits until it is done.

    Examples:
      xmsearch delete en-water-cycle fr-pain-maison
      xmsearch delete report-7 --tenant acme --json
    """
    from xmsearch.ingestor import Ingestor

    with console.status("loading the model", spinner="dots"):
        ingestor = Ingestor.from_settings()
    try:
        job = ingestor.wait(ingestor.delete(ids, tenant))
    finally:
        ingestor.close()
    if job["status"] == "failed":
        raise XmsearchError(f"the delete failed: {'; '.join(job.get('errors', []))}")
    _print_job(job if as_json else {"deleted": len(ids), "job": job["id"]}, as_json)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: XMSEARCH_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: XMSEARCH_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn processes (distributed mode only; Edge: 1).")] = 1,
) -> None:
    """Run the HTTP API (OpenAPI at /docs). API keys are required unless XMSEARCH_API_AUTH=disabled,
    which only listens on loopback.

    Examples:
      XMSEARCH_API_KEYS='[{"sha256": "<from xmsearch api-key>", "name": "app"}]' xmsearch serve --port 8000
      XMSEARCH_API_AUTH=disabled xmsearch serve
    """
    import uvicorn

    from retriever.settings import get_settings
    from xmsearch.api.app import create_app

    settings = get_settings()
    host = host or settings.api_host
    if settings.api_auth == "disabled" and host not in ("127.0.0.1", "::1", "localhost"):
        raise XmsearchError(f"XMSEARCH_API_AUTH=disabled serves loopback only, not {host}: configure API keys")
    if workers > 1 and not settings.broker_url:
        raise XmsearchError("the embedded mode owns its store in one process: --workers 1, or use the distributed mode")
    if workers > 1:
        uvicorn.run(
            "xmsearch.api.app:create_app", factory=True, host=host, port=port or settings.api_port, workers=workers
        )
    else:
        uvicorn.run(create_app(settings), host=host, port=port or settings.api_port, log_level="info")


@app.command("api-key")
def api_key(
    name: Annotated[str, typer.Option(help="A name for the key (logs show it, never the key).")] = "app",
    tenant: Annotated[str | None, typer.Option(help="Bind the key to this tenant.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make a new API key. The key is shown once; the settings keep only its SHA-256.

    Examples:
      xmsearch api-key --name billing-app
      xmsearch api-key --name acme-portal --tenant acme --json
    """
    from retriever.settings import ApiKey
    from xmsearch.api.auth import new_key

    key, digest = new_key()
    entry = ApiKey(sha256=digest, name=name, tenant=tenant).model_dump(exclude_none=True)
    if as_json:
        print(json.dumps({"key": key, "entry": entry}))
        return
    console.print(f"key (give it to the client; it is not stored): [bold]{key}[/bold]")
    console.print("add this entry to the JSON list in XMSEARCH_API_KEYS:")
    print(json.dumps(entry))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query, in any language.")],
    k: Annotated[int, typer.Option("--k", help="How many hits.")] = 10,
    lang: Annotated[str | None, typer.Option("--lang", help="The query's language (default: detected).")] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help='JSON filter, e.g. {"language": "fr"}.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search the index.

    Examples:
      xmsearch search "how do vaccines work"
      xmsearch search "pain maison" --lang fr --k 3 --filter '{"metadata.topic": "cooking"}' --json
    """
    from retriever.errors import InvalidInputError
    from retriever.search import Retriever

    try:
        flt = json.loads(filter_) if filter_ else None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--filter is not valid JSON: {exc}") from exc
    retriever = Retriever.from_settings()
    try:
        result = retriever.search(query, k=k, language=lang, filter=flt)
    finally:
        retriever.close()
    if as_json:
        hits = [dataclasses.asdict(h) for h in result.hits]
        print(
            json.dumps(
                {"query": query, "language": result.language.adapter, "hits": hits, "timings_ms": result.timings_ms}
            )
        )
        return
    console.print(f"[bold]{query}[/bold] ({result.language.adapter})")
    for hit in result.hits:
        console.print(f"{hit.score:7.2f}  {hit.document_id}#{hit.chunk} [{hit.language}]  {hit.text[:100]}")


@model_app.command("make-tiny")
def make_tiny_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the checkpoint into.")],
    languages: Annotated[str, typer.Option(help="Comma-separated adapter codes; 'all' = ColBERT-XM's 81.")] = "",
    tokenizer: Annotated[Path | None, typer.Option(help="A tokenizer.json to use (e.g. the real XLM-R).")] = None,
    hidden_size: Annotated[int, typer.Option(help="Hidden size (768 = XMOD-base).")] = 32,
    layers: Annotated[int, typer.Option(help="Transformer layers (12 = XMOD-base).")] = 2,
    heads: Annotated[int, typer.Option(help="Attention heads (12 = XMOD-base).")] = 2,
    dim: Annotated[int, typer.Option(help="ColBERT vector size (128 = ColBERT-XM).")] = 16,
    query_maxlen: Annotated[int, typer.Option(help="Query length in tokens (32 = ColBERT-XM).")] = 64,
    doc_maxlen: Annotated[int, typer.Option(help="Document length in tokens.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write a checkpoint with random weights in the exact on-disk format of antoinelouis/colbert-xm.

    Examples:
      xmsearch model make-tiny ./tiny-model
      xmsearch model make-tiny ./base-random --languages all --tokenizer xlmr/tokenizer.json
        --hidden-size 768 --layers 12 --heads 12 --dim 128 --query-maxlen 32 --doc-maxlen 256   (real size)
    """
    from retriever.languages import COLBERT_XM_LANGUAGES
    from retriever.tiny import DEFAULT_LANGUAGES, make_tiny

    chosen = (
        COLBERT_XM_LANGUAGES
        if languages == "all"
        else tuple(c.strip() for c in languages.split(",") if c.strip()) or DEFAULT_LANGUAGES
    )
    with console.status(f"writing {out}", spinner="dots"):
        make_tiny(
            out,
            languages=chosen,
            tokenizer_json=tokenizer,
            hidden_size=hidden_size,
            layers=layers,
            heads=heads,
            dim=dim,
            query_maxlen=query_maxlen,
            doc_maxlen=doc_maxlen,
            seed=seed,
        )
    if as_json:
        print(json.dumps({"path": str(out), "adapters": list(chosen)}))
        return
    console.print(f"wrote {out} ({len(chosen)} adapters); use it with XMSEARCH_MODEL={out}")


@model_app.command("info")
def model_info(
    model: Annotated[str | None, typer.Argument(help="Checkpoint folder or hub id (default: XMSEARCH_MODEL).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what a checkpoint says about itself: sizes, lengths, markers and adapters.

    Example: xmsearch model info ./tiny-model
    """
    from retriever.checkpoint import locate, read_spec
    from retriever.settings import get_settings

    name = model or get_settings().model
    spec = read_spec(locate(name), name)
    info = {
        "model_id": spec.model_id,
        "path": str(spec.path),
        "dim": spec.dim,
        "hidden_size": spec.hidden_size,
        "query_maxlen": spec.query_maxlen,
        "doc_maxlen": spec.doc_maxlen,
        "mask_punctuation": spec.mask_punctuation,
        "attend_to_mask_tokens": spec.attend_to_mask_tokens,
        "languages": list(spec.languages),
    }
    if as_json:
        print(json.dumps(info))
        return
    for key, value in info.items():
        console.print(f"[bold]{key}[/bold]: {', '.join(value) if isinstance(value, list) else value}")


@bench_app.command("encode")
def bench_encode(
    model: Annotated[str | None, typer.Option(help="Checkpoint folder or hub id (default: XMSEARCH_MODEL).")] = None,
    docs: Annotated[int, typer.Option(help="Documents to encode.")] = 256,
    queries: Annotated[int, typer.Option(help="Single queries to time.")] = 64,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the best is kept).")] = 3,
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, bf16, fp16.")] = "fp32,bf16",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Documents/s, tokens/s and query latency of the encoder next to the bare XmodModel forward.

    Example: xmsearch bench encode --model ./base-random --docs 128
    """
    from retriever import Encoder
    from retriever.bench import agreement, bench_encoder, sample_texts
    from retriever.settings import get_settings

    texts, qs = sample_texts(docs, queries)
    rows, reference = [], None
    for precision in precisions.split(","):
        settings = get_settings().model_copy(update={"precision": precision.strip()})
        with console.status(f"benchmarking {precision}", spinner="dots"):
            encoder = Encoder.from_pretrained(model, settings)
            figures = bench_encoder(encoder, texts, qs, repeats)
            vectors = encoder.encode_documents(texts[:64], "en")
        if reference is None:
            reference = vectors
        else:
            mean, worst = agreement(reference, vectors)
            figures = dataclasses.replace(figures, mean_cosine_vs_fp32=mean, worst_cosine_vs_fp32=worst)
        rows.append(figures)
        del encoder
    if as_json:
        print(json.dumps([f.as_dict() for f in rows]))
        return
    table = Table(title=f"encoder vs bare XmodModel forward ({docs} documents, {queries} single queries)")
    table.add_column("figure")
    for f in rows:
        table.add_column(f.precision, justify="right")
    lines = [
        ("documents/s (encoder)", "docs_per_s", ".2f"),
        ("documents/s (bare forward)", "bare_docs_per_s", ".2f"),
        ("ratio encoder / bare", "ratio", ".3f"),
        ("documents/s (bare, unsorted batches)", "bare_unsorted_docs_per_s", ".2f"),
        ("tokens/s (encoder)", "tokens_per_s", ".0f"),
        ("query p50 ms (encoder)", "query_p50_ms", ".2f"),
        ("query p50 ms (bare forward)", "bare_query_p50_ms", ".2f"),
        ("query speed ratio encoder / bare", "query_ratio", ".3f"),
        ("cosine vs first: mean", "mean_cosine_vs_fp32", ".6f"),
        ("cosine vs first: worst", "worst_cosine_vs_fp32", ".6f"),
    ]
    for label, attr, spec in lines:
        values = [getattr(f, attr) for f in rows]
        table.add_row(label, *("-" if v is None else format(v, spec) for v in values))
    console.print(table)


@bench_app.command("search")
def bench_search_cmd(
    sizes: Annotated[
        str, typer.Option(help="Collection sizes on Qdrant Edge (comma-separated).")
    ] = "1000,5000,20000,50000",
    local_sizes: Annotated[str, typer.Option(help="Collection sizes on qdrant-client local mode.")] = "1000,4000",
    realistic: Annotated[int, typer.Option(help="Passages encoded by the real MiniLM encoder.")] = 2000,
    queries: Annotated[int, typer.Option(help="Queries per measurement.")] = 50,
    candidates: Annotated[
        str, typer.Option(help="First-stage candidates to rerank (comma-separated).")
    ] = "100,200,400",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Query latency p50/p95 per backend, mode and size; first-stage recall@10; bytes per stored token.

    Needs the bench extra (pip install 'xmsearch[bench]'; MUVERA rows also need 'xmsearch[muvera]').
    Example: xmsearch bench search --sizes 1000,10000 --local-sizes 1000 --realistic 500
    """
    from retriever.bench_search import default_first_stages, run

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    with console.status("benchmarking search (minutes)", spinner="dots"):
        rows = run(ints(sizes), ints(local_sizes), realistic, queries, ints(candidates), default_first_stages())
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=f"search: {queries} queries per row, k=10")
    for col in ("backend", "vectors", "size", "mode", "p50 ms", "p95 ms", "recall@10", "bytes/token", "load s"):
        table.add_column(col, justify="right")
    for r in rows:
        recall = "-" if r.recall_at_10 is None else f"{r.recall_at_10:.3f}"
        per_token = "-" if r.bytes_per_token is None else f"{r.bytes_per_token:.0f}"
        table.add_row(
            r.backend,
            r.data,
            str(r.size),
            r.mode,
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            recall,
            per_token,
            f"{r.load_s:.1f}",
        )
    console.print(table)


@bench_app.command("ingest")
def bench_ingest_cmd(
    docs: Annotated[int, typer.Option(help="Passages (of the Python documentation) to ingest.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """End-to-end documents/s (JSON Lines -> Redis -> worker -> searchable points) next to the
    encoder alone on the same texts, in one run.

    Example: XMSEARCH_MODEL=./base-random xmsearch bench ingest --docs 200
    """
    from retriever.settings import get_settings
    from workers.bench_ingest import run

    with console.status("benchmarking ingestion (minutes)", spinner="dots"):
        figures = run(get_settings(), docs)
    if as_json:
        print(json.dumps(figures.as_dict()))
        return
    console.print(
        f"{figures.documents} documents ({figures.chunks} chunks): "
        f"end to end {figures.end_to_end_docs_per_s:.2f} docs/s, "
        f"encoder alone {figures.encoder_docs_per_s:.2f} docs/s, ratio {figures.ratio:.3f}"
    )


@bench_app.command("api")
def bench_api_cmd(
    clients: Annotated[int, typer.Option(help="Concurrent clients.")] = 4,
    seconds: Annotated[float, typer.Option(help="Seconds per phase.")] = 10.0,
    rounds: Annotated[int, typer.Option(help="Alternating direct/API rounds.")] = 2,
    k: Annotated[int, typer.Option(help="Hits per query.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Load test of POST /search on loopback (`xmsearch serve` in its own process) next to the Retriever
    called directly (with and without query batching), same clients, queries and index, phases
    alternating; prints throughput, p50/p95/p99 and the ratios. Bounded: 3 x rounds x seconds plus
    start-up.

    Example: XMSEARCH_MODEL=./base-random xmsearch bench api --clients 4 --seconds 10
    """
    from retriever.settings import get_settings
    from xmsearch.bench_api import as_dicts, run

    with console.status("load-testing the API", spinner="dots"):
        rows = run(get_settings(), clients, seconds, rounds, k)
    if as_json:
        print(json.dumps(as_dicts(rows)))
        return
    table = Table(title=f"POST /search vs Retriever.search, {clients} clients, {rounds} x {seconds:.0f} s each")
    for col in ("path", "requests", "per s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.path, str(r.requests), f"{r.per_s:.1f}", f"{r.p50_ms:.2f}", f"{r.p95_ms:.2f}", f"{r.p99_ms:.2f}"
        )
    console.print(table)
    direct, api, unbatched = rows
    console.print(
        f"API / direct: p50 {api.p50_ms / direct.p50_ms:.3f}, p99 {api.p99_ms / direct.p99_ms:.3f}, "
        f"throughput {api.per_s / direct.per_s:.3f}; query batching: throughput "
        f"{direct.per_s / unbatched.per_s:.2f}x, p50 {direct.p50_ms / unbatched.p50_ms:.3f}"
    )


@bench_app.command("langid")
def bench_langid_cmd(
    threshold: Annotated[float | None, typer.Option(help="Confidence threshold (default: the setting).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accuracy of language identification on the bundled set: 81 languages, queries and passages.

    Example: xmsearch bench langid --threshold 0.7
    """
    from retriever.bench import bench_langid
    from retriever.settings import get_settings

    rows = bench_langid(get_settings().langid_min_confidence if threshold is None else threshold)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title="language identification (py3langid + hanzidentifier), 81 XMOD languages")
    for col in ("kind", "texts", "accuracy", "threshold", "kept", "accuracy of kept", "most missed"):
        table.add_column(col, justify="right")
    for r in rows:
        missed = ", ".join(f"{k} {v}" for k, v in list(r.per_language_misses.items())[:6]) or "-"
        table.add_row(
            r.kind,
            str(r.texts),
            f"{r.accuracy:.3f}",
            f"{r.threshold:.2f}",
            f"{r.kept:.3f}",
            f"{r.kept_accuracy:.3f}",
            missed,
        )
    console.print(table)


def main() -> None:
    """Entry point: run the app, turning xmsearch errors into one clear line and exit code 1 or 4."""
    try:
        app()
    except XmsearchError as exc:
        if _state["debug"]:
            raise
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        sys.exit(4 if isinstance(exc, TransientError) else 1)
