"""Commands on the index that encode nothing (no model weights, no torch): `status` (the
collection), `documents` (what it holds, page by page), `export` (its documents as ingested) and
`collections list|drop` (its versions),
on the store or, with --url, through a running API. Their --json shapes are the API's (GET /status,
GET /documents, GET /collections)."""

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

collections_app = typer.Typer(no_args_is_help=True, help="The collection's versions: list them, drop old ones.")
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
    from xmsearch.ingestor import mode_for
    from xmsearch.retriever.components import index_store
    from xmsearch.retriever.errors import PermanentError, XmsearchError
    from xmsearch.retriever.index.filters import owned_by
    from xmsearch.settings import get_settings

    settings = get_settings()
    if mode_for(settings) == "remote":
        raise PermanentError("export reads the store itself: run it where the store is, without --url")
    store = index_store(settings)
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
