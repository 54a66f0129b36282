"""`xmsearch bench`: run the benchmarks of xmsearch.bench and print their figures as tables."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from xmsearch.cli.output import console, stderr

if TYPE_CHECKING:
    import numpy as np

    from xmsearch.retriever import Encoder

app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures (ratios measured side by side).")


@app.command("encode")
def bench_encode(
    model: Annotated[str | None, typer.Option(help="Checkpoint folder or hub id (default: XMSEARCH_MODEL).")] = None,
    docs: Annotated[int, typer.Option(help="Documents to encode.")] = 256,
    queries: Annotated[int, typer.Option(help="Single queries to time.")] = 64,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the best is kept).")] = 3,
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, bf16, fp16.")] = "fp32,bf16",
    query_runtimes: Annotated[
        str,
        typer.Option(
            help="Comma-separated query runtimes besides torch, each with the first precision: auto, onnx, onnx-int8."
        ),
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Documents/s, tokens/s and query latency of the encoder next to the bare XmodModel forward.

    Each row after the first is compared with it: the cosine of its vectors (a query runtime changes
    only the queries, so its queries' vectors are compared) and recall@10 of each query's exact top-10.

    Example: xmsearch bench encode --model ./base-random --docs 128 --query-runtimes onnx,onnx-int8
    """
    from xmsearch.bench.encode import agreement, bench_encoder, ranking_agreement, sample_texts, top10
    from xmsearch.retriever import Encoder
    from xmsearch.settings import get_settings

    texts, qs = sample_texts(docs, queries)
    names = [p.strip() for p in precisions.split(",")]
    configurations = [(p, "torch") for p in names] + [
        (names[0], r.strip()) for r in query_runtimes.split(",") if r.strip()
    ]
    rows, first = [], None
    for precision, runtime in configurations:
        settings = get_settings().model_copy(update={"precision": precision, "query_runtime": runtime})
        with console.status(f"benchmarking {precision}, {runtime} queries", spinner="dots"):
            encoder = Encoder.from_pretrained(model, settings)
            figures = bench_encoder(encoder, texts, qs, repeats)  # precision: the dtype (auto: as chosen)
            if runtime != "torch":
                figures = dataclasses.replace(figures, precision=f"{figures.precision}, {runtime} queries")
            vectors = encoder.encode_documents(texts, "en"), encoder.encode_queries(qs, "en")
            rankings = top10(*vectors)
        if first is None:
            first = vectors, rankings
        else:
            changed = 1 if runtime != "torch" else 0  # a query runtime changes only the queries' vectors
            mean, worst = agreement(first[0][changed], vectors[changed])
            figures = dataclasses.replace(
                figures, mean_cosine_vs_fp32=mean, worst_cosine_vs_fp32=worst,
                recall_at_10_vs_fp32=ranking_agreement(first[1], rankings),
            )  # fmt: skip
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
        ("recall@10 of queries' exact top-10 vs first", "recall_at_10_vs_fp32", ".3f"),
    ]
    for label, attr, spec in lines:
        values = [getattr(f, attr) for f in rows]
        table.add_row(label, *("-" if v is None else format(v, spec) for v in values))
    console.print(table)


@app.command("search")
def bench_search_cmd(
    sizes: Annotated[
        str, typer.Option(help="Collection sizes: the first passages (comma-separated).")
    ] = "10000,25000,60000",
    passages: Annotated[
        Path | None, typer.Option(help="JSON list of passages (.json or .json.xz); default: the Python documentation.")
    ] = None,
    queries: Annotated[
        Path | None, typer.Option(help='JSON list of queries (strings or {"q": ...}); default: spans of passages.')
    ] = None,
    n_queries: Annotated[int, typer.Option("--n-queries", help="Queries per measurement.")] = 200,
    candidates: Annotated[
        str, typer.Option(help="First-stage candidates to rerank (comma-separated).")
    ] = "400,700,1000",
    probes: Annotated[str, typer.Option(help="Centroids per query token (comma-separated).")] = "8",
    smaller: Annotated[
        bool, typer.Option(help="Also measure int8/binary copies and pooled tokens at the largest size.")
    ] = True,
    model: Annotated[
        str | None, typer.Option(help="Also time whole searches at the largest size: queries encoded by this model.")
    ] = None,
    muvera: Annotated[
        bool, typer.Option(help="Also MUVERA (10,240 dims; ~1 GB at 50k passages) at every size: xmsearch[muvera].")
    ] = False,
    query_runtimes: Annotated[
        str,
        typer.Option(help="With --model: the query runtimes to time (comma-separated: auto, torch, onnx, onnx-int8)."),
    ] = "torch,onnx-int8",
    shortlists: Annotated[
        str,
        typer.Option(
            help="The first stages' candidates also through these shortlists (comma-separated): SIZE/passages "
            "(the whole query scores the pooled passages) or SIZE/POOL_FACTOR (the query pooled by POOL_FACTOR "
            "scores the tokens); default: the settings' shortlist; none: ''."
        ),
    ] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every first stage side by side on real token vectors at each size: recall@10 against exact
    MaxSim, p50/p95 of the store's query, bytes per token in RAM and on disk, and an extrapolation to
    1M passages (labelled). With --model, whole searches too (encode the query, first stage,
    rerank), at the largest size, for each query runtime (the precision from XMSEARCH_PRECISION).
    Needs the bench extra (pip install 'xmsearch[bench]').

    Example: xmsearch bench search --passages passages.json.xz --queries queries.json.xz --model ./m
    """
    from xmsearch.bench.search import run
    from xmsearch.retriever import Encoder
    from xmsearch.retriever.index.first_stage import shortlist_of
    from xmsearch.retriever.index.stores.base import Shortlist
    from xmsearch.settings import get_settings

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    def shortlist(text: str) -> Shortlist:
        size, _, scoring = text.strip().partition("/")
        if scoring == "passages":
            return Shortlist(int(size), settings.shortlist_pool_factor)
        return Shortlist(int(size), int(scoring), passages=False)

    settings = get_settings()
    try:
        if shortlists == "default":
            through = [s for s in (shortlist_of(settings),) if s is not None]
        else:
            through = [shortlist(s) for s in shortlists.split(",") if s.strip()]
        if any(min(s.size, s.pool_factor) < 1 for s in through):
            raise ValueError
    except (TypeError, ValueError):
        raise typer.BadParameter(
            f"{shortlists!r}: give SIZE/passages or SIZE/POOL_FACTOR, positive numbers, e.g. 150/passages,150/4"
        ) from None
    encoders: dict[str, Callable[[str], np.ndarray]] = {}
    for runtime in (r.strip() for r in query_runtimes.split(",")) if model else ():
        encoder = Encoder.from_pretrained(model, settings.model_copy(update={"query_runtime": runtime}))
        on = runtime if runtime != "auto" else f"auto: {encoder.query_runtime}"  # what auto measured faster here
        encoders[f"{str(encoder.model.dtype).removeprefix('torch.')}, {on} queries"] = _one_query(encoder)
    with stderr.status("benchmarking search (minutes)", spinner="dots"):
        rows = run(
            ints(sizes), n_queries, ints(candidates), ints(probes), passages, queries, smaller,
            log=lambda line: stderr.log(line), encoders=encoders, muvera=muvera, shortlists=through,
        )  # fmt: skip
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=f"search: {n_queries} queries per row, k=10, recall against exact MaxSim")
    for col in ("size", "method", "candidates", "recall@10", "p50 ms", "p95 ms", "RAM B/token", "disk B/token", "note"):
        table.add_column(col, justify="left" if col in ("method", "note") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for r in rows:
        table.add_row(
            f"{r.size:,}", r.method, fmt(r.candidates, "d"), fmt(r.recall_at_10, ".3f"), fmt(r.p50_ms, ".1f"),
            fmt(r.p95_ms, ".1f"), fmt(r.ram_bytes_per_token, ".0f"), fmt(r.disk_bytes_per_token, ".0f"), r.note,
        )  # fmt: skip
    console.print(table)


def _one_query(encoder: Encoder) -> Callable[[str], np.ndarray]:
    """Encode one query text as a search does (its language detected)."""
    return lambda text: encoder.encode_queries([text])[0]


@app.command("ingest")
def bench_ingest_cmd(
    docs: Annotated[int, typer.Option(help="Passages (of the Python documentation) to ingest.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """End-to-end documents/s (JSON Lines -> Redis -> worker -> searchable points) next to the
    encoder alone on the same texts, in one run.

    Example: XMSEARCH_MODEL=./base-random xmsearch bench ingest --docs 200
    """
    from xmsearch.bench.ingest import run
    from xmsearch.settings import get_settings

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


@app.command("api")
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
    from xmsearch.bench.api import as_dicts, run
    from xmsearch.settings import get_settings

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


@app.command("contention")
def bench_contention_cmd(
    clients: Annotated[int, typer.Option(help="Concurrent search clients.")] = 4,
    seconds: Annotated[float, typer.Option(help="Seconds of idle searches, and of ingest alone, per phase.")] = 10.0,
    share: Annotated[float | None, typer.Option(help="Indexing share under search load (default: setting).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Searches while the same process indexes (embedded, as `xmsearch serve`), search priority on and
    off in one run: search p50/p99 idle and during an ingest, indexing docs/s alone and during
    searches, and the ratios.

    Example: XMSEARCH_MODEL=./base-random xmsearch bench contention --clients 4 --seconds 10
    """
    from xmsearch.bench.contention import run
    from xmsearch.settings import get_settings

    settings = get_settings()
    with console.status("searching while indexing", spinner="dots"):
        rows = run(settings, clients, seconds, settings.search_priority_share if share is None else share)
    if as_json:
        print(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(title=f"search during an embedded ingest, {clients} clients")
    for col in (
        "priority",
        "idle p50 ms",
        "busy p50 ms",
        "p50 ratio",
        "idle p99",
        "busy p99",
        "p99 ratio",
        "ingest alone docs/s",
        "during searches",
        "ratio",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r.priority,
            f"{r.idle_p50_ms:.1f}",
            f"{r.busy_p50_ms:.1f}",
            f"{r.p50_ratio:.2f}",
            f"{r.idle_p99_ms:.1f}",
            f"{r.busy_p99_ms:.1f}",
            f"{r.p99_ratio:.2f}",
            f"{r.ingest_alone_docs_per_s:.1f}",
            f"{r.ingest_busy_docs_per_s:.1f}",
            f"{r.ingest_busy_docs_per_s / r.ingest_alone_docs_per_s:.2f}",
        )
    console.print(table)


@app.command("reindex")
def bench_reindex_cmd(
    docs: Annotated[int, typer.Option(help="Documents (passages of the Python documentation).")] = 200,
    clients: Annotated[int, typer.Option(help="Clients searching back to back during the live reindex.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reindex throughput (rebuild from the store, encode, verify, swap) against plain ingestion of the
    same documents, in one run, on an embedded store in a temporary folder; then a reindex inside the
    serving process while clients search: search p50 during it against idle.

    Example: XMSEARCH_MODEL=./base-random xmsearch bench reindex --docs 200
    """
    from xmsearch.bench.reindex import run
    from xmsearch.settings import get_settings

    with console.status("ingesting, reindexing, then reindexing while searching", spinner="dots"):
        f = run(get_settings(), docs, clients)
    if as_json:
        print(json.dumps(f.as_dict()))
        return
    console.print(
        f"{f.documents} documents ({f.chunks} chunks): ingest {f.ingest_docs_per_s:.2f} docs/s, reindex "
        f"{f.reindex_docs_per_s:.2f} docs/s, ratio {f.ratio:.3f}\n"
        f"reindex inside serve with {clients} clients searching: {f.live_reindex_docs_per_s:.2f} docs/s; search p50 "
        f"{f.search_during_reindex_p50_ms:.1f} ms during it against {f.search_idle_p50_ms:.1f} ms idle, ratio "
        f"{f.search_p50_ratio:.2f} ({f.searches_during_reindex} searches)"
    )


@app.command("langid")
def bench_langid_cmd(
    threshold: Annotated[float | None, typer.Option(help="Confidence threshold (default: the setting).")] = None,
    split: Annotated[
        str, typer.Option(help="Short texts: heldout (report), dev (tune rules and thresholds on it) or all.")
    ] = "heldout",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Language routing on short real texts (held out), per genre (interface texts in the 81 XMOD
    languages, conversational questions and replies in 26) and length band (1-4 and 5-12 words), each
    routing and detector side by side; then the hand-written queries and passages.

    Example: xmsearch bench langid --split dev --threshold 0.7
    """
    from xmsearch.bench.encode import bench_langid
    from xmsearch.bench.langid import BANDS, GENRES, bench_langid_short
    from xmsearch.settings import get_settings

    threshold = get_settings().langid_min_confidence if threshold is None else threshold
    short = bench_langid_short(split, threshold)
    rows = bench_langid(threshold)
    if as_json:
        print(json.dumps({"short": [f.as_dict() for f in short], "handwritten": [r.as_dict() for r in rows]}))
        return
    table = Table(title=f"short real texts ({split}): share routed to their own language's adapter")
    columns = [f"{genre} {band}" for genre in GENRES for band in BANDS]
    for col in ("routing or detector", *(f"{c} words" for c in columns), "all", "ms/text", "most missed"):
        table.add_column(col, justify="left" if col.startswith(("routing", "most")) else "right")
    for f in short:
        worst = sorted(f.per_language.items(), key=lambda kv: kv[1])[:5]
        table.add_row(
            f.name, *(f"{f.accuracy[c]:.3f}" for c in columns), f"{f.accuracy['all']:.3f}",
            f"{f.ms_per_text:.3f}", ", ".join(f"{lang} {share:.2f}" for lang, share in worst),
        )  # fmt: skip
    console.print(table)
    table = Table(title="hand-written queries and passages (the default detection, best guess), 81 languages")
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
