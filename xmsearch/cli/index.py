"""Commands that read the index and encode nothing (no model weights, no torch): `status` (the
collection) and `documents` (what it holds, page by page), from the store or, with --url, from a
running API. Their --json shapes are the API's (GET /status, GET /documents)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table

from xmsearch.cli.output import console
from xmsearch.cli.root import app

T = TypeVar("T")


def _reading(read: Callable[[Any], T], path: str, params: dict[str, Any], model: type[T]) -> T:
    """`read` run on the store the settings name (opened without creating anything), or, in the
    remote mode, the API's answer to GET `path`."""
    from xmsearch.ingestor import mode_for
    from xmsearch.settings import get_settings

    settings = get_settings()
    if mode_for(settings) == "remote":
        from xmsearch.remote import ApiClient

        answer = ApiClient.once(settings, "GET", path, params={k: v for k, v in params.items() if v is not None})
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
    rows = {
        "collection": f"{described.collection} ({described.backend}, {described.location})",
        "version": f"{described.version} of {', '.join(described.versions)}",
        "model": spec.model_id,
        "schema": f"{spec.schema_}: {spec.dim}-dim tokens as {spec.datatype}, quantization {spec.quantization}, "
        f"first stage {spec.first_stage_dim or 'none'}",
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
