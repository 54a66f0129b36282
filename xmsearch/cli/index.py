"""Commands on the index that encode nothing (no model weights, no torch): `status` (the
collection), `documents` (what it holds, page by page), `export` (its documents as ingested),
`collections list|drop` (its versions) on the store or, with --url, through a running API (their
--json shapes are the API's: GET /status, GET /documents, GET /collections); and `collections
copy|snapshot|restore`, which move the collection between stores on the store itself."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from xmsearch.cli.output import console, stderr
from xmsearch.cli.root import app

collections_app = typer.Typer(
    no_args_is_help=True,
    help="The collection's versions: list them, drop old ones; copy the collection to another store, snapshot it, "
    "restore it.",
)
app.add_typer(collections_app, name="collections")

T = TypeVar("T")


def _reading(read: Callable[[Any], T], path: str, params: dict[str, Any], model: type[T], method: str = "GET") -> T:
    """`read` run on the store the settings name (opened without creating anything), or, in the
    remote mode, the API's answer to `method` `path`."""
    from xmsearch.ingestor import mode_for
    from xmsearch.settings import get_settings

    settings = get_settings()
    if mode_for(settings) == "remote":
        from xmsearch.remote import ApiClient

        answer = ApiClient.once(settings, method, path, params={k: v for k, v in params.items() if v is not None})
        return model.model_validate(answer)  # type: ignore[attr-defined, no-any-return]
    from xmsearch.retriever.components import index_store

    store = index_store(settings)
    try:
        store.open(create=False)
        return read(store)
    finally:
        store.close()


def _size(n: int | None) -> str:
    if n is None:
        return "not measured here (a server's)"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


@app.command()
def status(
    tenant: Annotated[str | None, typer.Option(help="Count only this tenant's points and documents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the shape GET /status answers).")] = False,
) -> None:
    """Show the collection: versions, model and schema, documents, points, size on disk.

    Where it is, the version searched and every version, the model and schema it was built with.

    Examples: xmsearch status    xmsearch status --tenant acme --json
    """
    from xmsearch.api.models import StatusOut
    from xmsearch.retriever.index.filters import owned_by

    scope = [] if tenant is None else [owned_by(tenant)]
    described = _reading(
        lambda store: StatusOut.model_validate(store.describe(scope)), "/status", {"tenant": tenant}, StatusOut
    )
    if as_json:
        print(described.model_dump_json(by_alias=True))
        return
    spec = described.spec
    first_stage = f"{spec.first_stage_dim}-dim vector" if spec.first_stage_dim else "none"
    if spec.centroids:
        codebook = described.codebook
        first_stage = "centroids, " + (
            "no codebook yet (searches are exact)"
            if codebook is None
            else f"codebook of {codebook['size']:,} ({'complete' if codebook['complete'] else 'being backfilled'})"
        )
    if spec.pooled:
        first_stage += "; shortlist of pooled passages"
    rows = {
        "collection": f"{described.collection} ({described.backend}, {described.location})",
        "version": f"{described.version} of {', '.join(described.versions)}",
        "model": spec.model_id,
        "schema": f"{spec.schema_}: {spec.dim}-dim tokens as {spec.datatype}, quantization {spec.quantization}, "
        f"first stage {first_stage}",
        "documents": f"{described.documents:,}" + (f" (tenant {tenant})" if tenant else ""),
        "points": f"{described.points:,} chunks",
        "size on disk": _size(described.size_bytes),
    }
    for name, value in rows.items():  # one line each, whatever the width: paths stay whole
        console.print(f"[bold]{name:<13}[/bold] {escape(value)}")


@app.command()
def documents(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's documents (default: every tenant's).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Documents in this page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Where the page starts: the `next` of the page before.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the shape GET /documents answers).")] = False,
) -> None:
    """List the stored documents, page by page (in storage order), with how many there are.

    Examples: xmsearch documents --tenant acme    xmsearch documents --limit 100 --cursor <next> --json
    """
    from xmsearch.api.models import DocumentsOut, DocumentSummaryOut
    from xmsearch.retriever.index.filters import owned_by

    scope = [] if tenant is None else [owned_by(tenant)]

    def read(store: Any) -> DocumentsOut:
        page, total, after = store.documents(scope, limit, cursor)
        return DocumentsOut(documents=[DocumentSummaryOut.of(p) for p in page], total=total, next=after)

    listed = _reading(read, "/documents", {"tenant": tenant, "limit": limit, "cursor": cursor}, DocumentsOut)
    if as_json:
        print(listed.model_dump_json())
        return
    rows = [
        (doc.id, doc.tenant or "-", doc.language, json.dumps(doc.metadata, ensure_ascii=False) if doc.metadata else "")
        for doc in listed.documents
    ]
    table = Table(box=None, header_style="bold")
    for i, column in enumerate(("id", "tenant", "language")):  # whole; the metadata gets what is left
        table.add_column(column, no_wrap=True, min_width=max([len(column), *(cell_len(r[i]) for r in rows)]))
    table.add_column("metadata", no_wrap=True, overflow="ellipsis")  # one line per document
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    shown = f"{len(listed.documents)} of {listed.total:,} document(s)" + (f" of tenant {tenant}" if tenant else "")
    console.print(shown + (f"; next page: --cursor {listed.next}" if listed.next else ""))


def _listing(store: Any) -> Any:
    from xmsearch.api.models import CollectionsOut, VersionOut

    return CollectionsOut(collection=store.alias, versions=[VersionOut.model_validate(v) for v in store.collections()])


def _print_versions(listed: Any, as_json: bool) -> None:
    """Each version on its own lines, whatever the width: paths and model ids stay whole."""
    if as_json:
        print(listed.model_dump_json())
        return
    for v in listed.versions:
        built = dict(v.built_with)
        size = "" if v.size_bytes is None else f", {_size(v.size_bytes)}"
        searched = " (searched)" if v.current else ""
        console.print(
            f"[bold]{escape(v.version)}[/bold]{searched}: {v.documents:,} documents, {v.points:,} points{size}"
        )
        model = f"{built.pop('model', '?')} ({built.pop('model_id', '?')})"
        built.pop("schema", None)
        console.print(escape(f"  model {model}, " + ", ".join(f"{k} {val}" for k, val in built.items())))


@collections_app.command("list")
def collections_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the shape GET /collections answers).")] = False,
) -> None:
    """Every version of the collection, oldest first: the one searched, what each was built with
    (model, precision, chunking, datatype, quantization, first stage), documents, points, size.

    Example: xmsearch collections list
    """
    from xmsearch.api.models import CollectionsOut

    _print_versions(_reading(_listing, "/collections", {}, CollectionsOut), as_json)


@collections_app.command("drop")
def collections_drop(
    version: Annotated[str, typer.Argument(help="The version to remove (`xmsearch collections list` names them).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: the versions left.")] = False,
) -> None:
    """Remove a version that searches do not use, and everything in it (the one searched is refused).

    Example: xmsearch collections drop xmsearch-v1
    """
    from xmsearch.api.models import CollectionsOut

    def drop(store: Any) -> Any:
        store.drop(version)
        return _listing(store)

    _print_versions(_reading(drop, f"/collections/{version}", {}, CollectionsOut, "DELETE"), as_json)


@app.command()
def export(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's documents (default: every tenant's).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file (default: standard output).")] = None,
) -> None:
    """Write every stored document as it was ingested (exact text, language as given, tenant,
    metadata) as JSON Lines that `xmsearch ingest` reads back: a backup, a move, a reindex's source.

    Reads the store where it is (not through --url). Documents stored before xmsearch kept their text
    cannot be rebuilt: they are named at the end (exit code 1).

    Examples: xmsearch export --output backup.jsonl    xmsearch export --tenant acme | gzip > acme.jsonl.gz
    """
    from xmsearch.ingest.export import Export
    from xmsearch.retriever.components import index_store
    from xmsearch.retriever.errors import XmsearchError
    from xmsearch.retriever.index.filters import owned_by

    store = index_store(_on_the_store("export"))
    written = 0
    try:
        store.open(create=False)
        job = Export(store, [] if tenant is None else [owned_by(tenant)])
        with output.open("w", encoding="utf-8") if output else contextlib.nullcontext(sys.stdout) as out:
            for record in job.records():
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
    finally:
        store.close()
    stderr.print(f"{written:,} document(s) exported" + (f" to {output}" if output else ""))
    if job.unrebuildable:
        first = ", ".join(f"{doc!r}" + (f" (tenant {t})" if t else "") for t, doc in job.unrebuildable[:5])
        raise XmsearchError(
            f"{len(job.unrebuildable)} document(s) were stored before xmsearch kept each document's text and cannot "
            f"be rebuilt (e.g. {first}): ingest them again from their source"
        )


def _on_the_store(command: str) -> Any:
    """The settings, refusing the remote mode: `command` reads (and writes) stores themselves."""
    from xmsearch.ingestor import mode_for
    from xmsearch.retriever.errors import PermanentError
    from xmsearch.settings import get_settings

    settings = get_settings()
    if mode_for(settings) == "remote":
        raise PermanentError(f"{command} reads the store itself: run it where the store is, without --url")
    return settings


def _moved(move: Callable[[Callable[[int, int], None]], Any], label: str, as_json: bool) -> None:
    """Run a move of the collection with a live bar of points copied, then say what it did."""
    from xmsearch.cli.output import job_progress

    with job_progress(label, as_json, unit="points") as progress:
        bar = progress.add_task("", total=None)
        report = move(lambda done, total: progress.update(bar, completed=done, total=total))
    if as_json:
        print(json.dumps(report.record()))
        return
    resumed = f" (went on from {report.resumed_at:,} copied before)" if report.resumed_at else ""
    console.print(
        escape(
            f"{report.points:,} points of {report.documents:,} documents copied from {report.source} to "
            f"{report.target} as {report.version}{resumed} in {report.seconds:,.1f} s; verified: the same counts, "
            f"and {report.searches_compared} searches ranked the same"
        )
    )
    if report.replaced:
        console.print(escape(f"{report.replaced} is kept there: `xmsearch collections drop {report.replaced}` there"))


@collections_app.command("copy")
def collections_copy(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="WHERE",
            help="Copy the collection to WHERE: a Qdrant server's URL (http://qdrant:6333), edge:FOLDER or "
            "local:FOLDER (a data folder, as XMSEARCH_DATA_DIR).",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="WHERE", help="Copy the collection from WHERE into the store the settings name."
        ),
    ] = None,
    qdrant_api_key: Annotated[
        str | None, typer.Option(help="API key of the Qdrant server --to or --from names.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: what was copied, where, how it was checked.")
    ] = False,
) -> None:
    """Move the collection to another store (or from one) without encoding anything again: Qdrant Edge
    to a Qdrant server when one machine is not enough, or back.

    Every point goes with its token vectors, first-stage vector and payload, the codebook with them,
    into a new version there; the alias there points at it only once the copy is verified (the same
    points and documents, sample searches ranking the same). Stopped, it goes on where it was when run
    again. Stop writes to the source meanwhile: they are not followed, and the check will fail.

    Examples: xmsearch collections copy --to http://qdrant:6333    xmsearch collections copy --from edge:./data
    """
    import hashlib

    from xmsearch.retriever.errors import InvalidInputError
    from xmsearch.retriever.index.stores import make_store, open_as_built, settings_at
    from xmsearch.retriever.index.transfer import copy_collection

    settings = _on_the_store("collections copy")
    if (to is None) == (source is None):
        raise InvalidInputError("give one of --to WHERE (copy there) or --from WHERE (copy from there)")
    there = settings_at(settings, to or source or "", qdrant_api_key)
    source_settings, target_settings = (settings, there) if to else (there, settings)
    key = hashlib.sha256(f"{to}|{source}|{settings.collection}".encode()).hexdigest()[:16]
    state = settings.data_dir / "copies" / f"{settings.collection}-{key}.json"

    def move(progress: Callable[[int, int], None]) -> Any:
        store = open_as_built(source_settings)
        try:
            return copy_collection(store, lambda spec: make_store(target_settings, spec), state, progress)
        finally:
            store.close()

    _moved(move, "copy", as_json)


@collections_app.command("snapshot")
def collections_snapshot(
    output: Annotated[Path, typer.Argument(help="The archive to write (.tar, or .tar.gz to compress it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: what was saved and how it was checked.")] = False,
) -> None:
    """Save the version searches use to one file: a verified copy of it in a Qdrant Edge folder,
    archived, whatever store it is in. `collections restore` reads it back into any store.

    For a Qdrant cluster, Qdrant's own snapshots are faster (deploy/README.md, "Backups").

    Example: xmsearch collections snapshot backups/xmsearch-2026-11-27.tar.gz
    """
    from xmsearch.retriever.index.stores import open_as_built
    from xmsearch.retriever.index.transfer import snapshot

    settings = _on_the_store("collections snapshot")

    def move(progress: Callable[[int, int], None]) -> Any:
        store = open_as_built(settings)
        try:
            return snapshot(store, output, progress)
        finally:
            store.close()

    _moved(move, "snapshot", as_json)


@collections_app.command("restore")
def collections_restore(
    archive: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A `collections snapshot` archive.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: what was restored and how it was checked.")
    ] = False,
) -> None:
    """Restore a snapshot into the store the settings name, as a new version that searches use once it
    is verified (the version searched before is kept: `collections list`, `collections drop`).

    Example: xmsearch collections restore backups/xmsearch-2026-11-27.tar.gz
    """
    from xmsearch.retriever.index.stores import make_store
    from xmsearch.retriever.index.transfer import restore

    settings = _on_the_store("collections restore")
    _moved(lambda progress: restore(archive, lambda spec: make_store(settings, spec), progress), "restore", as_json)
