"""Commands on documents: the demo (README command 1), ingest, delete and search. Every write goes
through the Ingestor, which decides the mode."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from xmsearch.cli.output import Rejects, console, follow, hit_line, job_json, print_job, raise_if_failed
from xmsearch.cli.root import app
from xmsearch.retriever.errors import XmsearchError


@app.command()
def demo(
    k: Annotated[int, typer.Option("--k", help="Hits shown per query.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """README command 1: index the sample corpus, then answer the sample queries.

    The bundled corpus (40 documents, 15 languages) goes into the embedded default; the bundled
    queries (12 languages, most of them cross-lingual) are answered from it.

    Re-running it encodes nothing new (unchanged documents are skipped). Example:
      XMSEARCH_MODEL=./tiny-model xmsearch demo --k 5
    """
    from importlib import resources

    from xmsearch.api.models import SearchOut
    from xmsearch.ingest.documents import limits
    from xmsearch.ingest.sources import read_jsonl
    from xmsearch.ingestor import Ingestor
    from xmsearch.retriever.components import Components
    from xmsearch.retriever.search import Retriever
    from xmsearch.settings import get_settings

    settings = get_settings()
    data = resources.files("xmsearch.ingest").joinpath("data")
    with console.status("loading the model", spinner="dots"):
        components = Components.load(settings)
        ingestor = Ingestor.from_settings(settings, components=components)
    queries = json.loads(data.joinpath("sample_queries.json").read_text(encoding="utf-8"))
    corpus = data.joinpath("sample_corpus.jsonl").read_bytes()
    try:
        records = read_jsonl(io.BytesIO(corpus), "sample_corpus.jsonl", limits(settings))
        job = follow(ingestor, ingestor.ingest(records, "demo"), as_json, corpus.count(b"\n"))
        texts, languages = [q["query"] for q in queries], [q["language"] for q in queries]
        results = Retriever(components).search_batch(texts, k=k, languages=languages)
    finally:
        ingestor.close()  # and the store the Retriever shares
    model_id = components.encoder.spec.model_id
    answers = [SearchOut.of(r) for r in results]  # as POST /search answers
    if as_json:
        out = [a.model_dump(mode="json") for a in answers]
        print(json.dumps({"model": model_id, "job": job_json(job), "results": out}))
        return
    console.print(
        f"[bold]{model_id}[/bold]: {job['accepted']} documents, {job['encoded']} chunks encoded, "
        f"{job['skipped_unchanged']} unchanged, in {settings.data_dir}"
    )
    for query, answer in zip(queries, answers, strict=True):
        found = sum(h.metadata.get("topic") == query["expect_topic"] for h in answer.hits)
        console.print(
            f"\n[bold]{answer.query}[/bold] ({answer.language.adapter}; topic {query['expect_topic']}: {found}/{k})"
        )
        for hit in answer.hits:
            console.print("  " + hit_line(hit, 70, f", {hit.metadata.get('topic', '')}"))


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="A JSON Lines file, a folder of .txt/.md files, or - for stdin.")],
    rejects: Annotated[Path | None, typer.Option(help="Write rejected records here (JSON Lines).")] = None,
    tenant: Annotated[
        str | None, typer.Option(help="The documents' tenant (those naming another tenant are rejected).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Distributed mode: wait until the workers are done.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Index documents from a file, a folder or stdin, skipping unchanged ones.

    In this process (embedded mode), as tasks for the workers when XMSEARCH_BROKER_URL is set
    (distributed mode; --no-wait returns at once), or through a running API (--url).

    Each JSON line: {"id": "...", "text": "...", "language": "fr", "tenant": "...", "metadata": {...}};
    only id and text are required. Bad records are reported with their line and reason.

    Examples:
      xmsearch ingest docs.jsonl --rejects rejects.jsonl
      cat docs.jsonl | xmsearch ingest -
      xmsearch ingest ./notes/            (id = relative path)
    """
    from xmsearch.ingest.documents import limits
    from xmsearch.ingest.sources import count_records, read_path
    from xmsearch.ingestor import Ingestor
    from xmsearch.settings import get_settings

    settings = get_settings()
    records = read_path(path, limits(settings))
    expected = count_records(path)
    with console.status("loading the model", spinner="dots"):  # embedded mode; distributed: at once
        ingestor = Ingestor.from_settings(settings, patient=True)
    reported = Rejects(rejects)
    try:
        job_id = ingestor.ingest(records, path, reported, tenant)
        job = follow(ingestor, job_id, as_json, expected) if wait or ingestor.runs_here else ingestor.job(job_id)
    finally:
        ingestor.close()  # embedded: after the job is done
        reported.close()
    if job is None:
        raise XmsearchError(f"job {job_id} is gone from the broker (was Redis restarted without persistence?)")
    print_job(job, as_json)
    if not as_json:
        reported.show()
    raise_if_failed(job, "ingest")
    if reported.count or job.get("failed"):
        raise typer.Exit(3)  # done, but some records were rejected or could not be indexed


@app.command()
def delete(
    ids: Annotated[list[str], typer.Argument(help="Document ids to remove (every chunk).")],
    tenant: Annotated[str | None, typer.Option(help="The documents' tenant (default: documents without one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Remove documents from the index (every chunk), and wait until it is done.

    In this process, through the workers when XMSEARCH_BROKER_URL is set (they own the store), or
    through a running API (--url).

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
    raise_if_failed(job, "delete")
    if as_json:
        print_job(job, as_json)
    else:
        found = len(set(ids)) - job["missing"]
        console.print(f"deleted {job['deleted']} chunk(s) of {found} document(s) (job {job['id']})")
        unnamed = [f"{job['missing']} document(s)"] if job["missing"] else []  # the workers count them only
        for reason in job.get("errors") or unnamed:
            console.print(f"[yellow]not found:[/yellow] {escape(reason)}")
    if job["missing"]:
        raise typer.Exit(3)  # done, but some documents were not there


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query, in any language.")],
    k: Annotated[int, typer.Option("--k", help="How many documents (or chunks, with --chunks).")] = 10,
    lang: Annotated[str | None, typer.Option("--lang", help="The query's language (default: detected).")] = None,
    lang_hint: Annotated[
        str | None, typer.Option("--lang-hint", help="The language to take where detection is unsure.")
    ] = None,
    allowed: Annotated[
        str | None, typer.Option("--allowed-langs", help="The only languages the query may be in, e.g. de,fr,it.")
    ] = None,
    filter_: Annotated[str | None, typer.Option("--filter", help='JSON filter, e.g. {"language": "fr"}.')] = None,
    offset: Annotated[int, typer.Option(help="Skip this many results first (the next page).")] = 0,
    min_score: Annotated[float | None, typer.Option(help="No result scoring under this.")] = None,
    chunks: Annotated[bool, typer.Option("--chunks", help="Every matching chunk, not each document once.")] = False,
    more: Annotated[int, typer.Option(help="Also show each document's next best chunks (up to this many).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the shape POST /search answers).")] = False,
) -> None:
    """Search the index: each document once, as its best chunk, best first.

    Examples:
      xmsearch search "how do vaccines work"
      xmsearch search "pain maison" --lang fr --k 3 --filter '{"metadata.topic": "cooking"}' --json
      xmsearch search "passport" --offset 10 --more 2
      xmsearch search "vacunas" --lang-hint es --allowed-langs es,pt,ca --json
    """
    from xmsearch.api.models import SearchIn, SearchOut
    from xmsearch.ingestor import mode_for
    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.settings import get_settings

    try:
        flt = json.loads(filter_) if filter_ else None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--filter is not valid JSON: {exc}") from exc
    request = SearchIn(
        query=query,
        k=k,
        language=lang,
        language_hint=lang_hint,
        allowed_languages=[code.strip() for code in allowed.split(",") if code.strip()] if allowed else None,
        filter=flt,
        offset=offset,
        score_threshold=min_score,
        group="chunk" if chunks else "document",
        chunks_per_document=more + 1,
    )
    settings = get_settings()
    if mode_for(settings) == "remote":
        from xmsearch.remote import ApiClient

        answer = ApiClient.once(settings, "POST", "/search", json=request.model_dump(exclude_none=True))
        found = SearchOut.model_validate(answer)
    else:
        from xmsearch.retriever.search import Retriever

        retriever = Retriever.from_settings(settings)
        try:
            result = retriever.search(query, k, lang, flt, (), request.hints(None), **request.paging())
        finally:
            retriever.close()
        found = SearchOut.of(result)
    if as_json:
        print(found.model_dump_json())
        return
    console.print(f"[bold]{escape(query)}[/bold] ({found.language.adapter})")
    if not found.hits:
        console.print("no results" + (f" after the first {offset}" if offset else ""))
    for hit in found.hits:
        console.print(hit_line(hit, 100))
        for other in hit.other_chunks:
            console.print("         " + hit_line(other, 91))
