"""The `xmsearch` command: its root (global options, the one-line error handler) and its command
groups, each in its own module: documents (demo, ingest, delete, search), the queue (worker, intake,
jobs, dlq), the API (serve, api-key), model tools and benchmarks.

Human output by default, `--json` for scripts; errors are one line without a traceback unless
`--debug`. Exit codes: 0 ok; 1 an error that will happen again (bad input, bad checkpoint, bad
settings); 2 usage; 3 done, but some records were rejected; 4 a service did not answer or is busy
(broker, Qdrant server, the API of --url: retrying later may work).
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Annotated

import typer
from rich.markup import escape

from xmsearch.cli.output import stderr
from xmsearch.retriever.errors import TransientError, XmsearchError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Multilingual late-interaction search.")
_state = {"debug": False}


def _version(shown: bool) -> None:
    if shown:
        print(f"xmsearch {importlib.metadata.version('xmsearch')}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Talk to a running xmsearch API (e.g. http://127.0.0.1:8000) instead of opening the store or the "
            "queue: ingest, delete, search, status, documents, jobs. Default: XMSEARCH_API_URL.",
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="The key sent with --url. Default: XMSEARCH_API_KEY.")
    ] = None,
) -> None:
    import os

    from xmsearch.logs import LogSettings, configure
    from xmsearch.settings import get_settings

    given = {name: value for name, value in (("XMSEARCH_API_URL", url), ("XMSEARCH_API_KEY", api_key)) if value}
    before = {name: os.environ.get(name) for name in given}
    os.environ.update(given)  # the settings read them as if set in the environment, for this command only

    def restore() -> None:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()

    ctx.call_on_close(restore)
    get_settings.cache_clear()  # one command, one reading of the settings (also when run in process)
    _state["debug"] = debug
    configure(LogSettings.from_env(), debug)


def main() -> None:
    """Entry point: run the app, turning xmsearch errors into one clear line and exit code 1 or 4."""
    try:
        app()
    except XmsearchError as exc:
        if _state["debug"]:
            raise
        stderr.print(f"[red]error:[/red] {escape(str(exc))}")  # one line, as written
        sys.exit(4 if isinstance(exc, TransientError) else 1)
