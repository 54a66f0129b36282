"""Commands of the HTTP API: serve it, make API keys, probe a health endpoint."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xmsearch.cli.output import console
from xmsearch.cli.root import app


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: XMSEARCH_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: XMSEARCH_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn processes (distributed mode only; Edge: 1).")] = 1,
) -> None:
    """Run the HTTP API (OpenAPI at /docs).

    API keys are required unless XMSEARCH_API_AUTH=disabled, which only listens on loopback.

    Examples:
      XMSEARCH_API_KEYS='[{"sha256": "<from xmsearch api-key>", "name": "app"}]' xmsearch serve --port 8000
      XMSEARCH_API_AUTH=disabled xmsearch serve
    """
    import uvicorn

    from xmsearch.api.app import check_serving, create_app
    from xmsearch.api.protocol import HeaderTimeoutProtocol
    from xmsearch.logs import serving
    from xmsearch.settings import get_settings

    settings = get_settings()
    host = host or settings.api_host
    check_serving(settings, host, workers)
    serving(settings)  # uvicorn's own lines (and its access log) go through the one handler
    where = {"host": host, "port": port or settings.api_port, "log_config": None, "http": HeaderTimeoutProtocol}
    if workers > 1:
        uvicorn.run("xmsearch.api.app:create_app", factory=True, workers=workers, **where)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(settings), **where)  # type: ignore[arg-type]


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
    from xmsearch.api.auth import new_key
    from xmsearch.settings import ApiKey

    key, digest = new_key()
    entry = ApiKey(sha256=digest, name=name, tenant=tenant).model_dump(exclude_none=True)
    if as_json:
        print(json.dumps({"key": key, "entry": entry}))
        return
    console.print(f"key (give it to the client; it is not stored): [bold]{key}[/bold]")
    console.print("add this entry to the JSON list in XMSEARCH_API_KEYS:")
    print(json.dumps(entry))


@app.command()
def probe(
    url: Annotated[str, typer.Argument(help="What to ask, e.g. http://127.0.0.1:8000/ready.")],
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """A health check for containers, which have no curl: exit 0 when URL answers 2xx, else 1 with
    why in one line (a worker's is its metrics, http://127.0.0.1:9108/metrics).

    Example: xmsearch probe http://127.0.0.1:8000/health
    """
    import urllib.error
    import urllib.request

    from xmsearch.retriever.errors import XmsearchError

    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # the caller's own URL
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise XmsearchError(f"{url} answered {exc.code}: {exc.read(300).decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise XmsearchError(f"{url} did not answer ({getattr(exc, 'reason', exc)})") from None
    console.print(f"{url} answered {status}")
