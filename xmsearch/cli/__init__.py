"""The `xmsearch` command line (`xmsearch.cli:main`); `app` is the Typer application."""

from xmsearch.cli import bench, documents, evaluate, index, model, queue, reindex, serve, train
from xmsearch.cli.root import app, main

app.add_typer(model.app, name="model")
app.add_typer(bench.app, name="bench")
app.add_typer(reindex.app, name="reindex")

__all__ = ["app", "documents", "evaluate", "index", "main", "queue", "serve", "train"]
