"""`xmsearch model`: make and inspect ColBERT-XM checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from xmsearch.cli.output import console

app = typer.Typer(no_args_is_help=True, help="Make and inspect ColBERT-XM checkpoints.")


@app.command("make-tiny")
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
    from xmsearch.retriever.model.languages import COLBERT_XM_LANGUAGES
    from xmsearch.retriever.model.tiny import DEFAULT_LANGUAGES, make_tiny

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


@app.command("info")
def model_info(
    model: Annotated[str | None, typer.Argument(help="Checkpoint folder or hub id (default: XMSEARCH_MODEL).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what a checkpoint says about itself: sizes, lengths, markers and adapters.

    Example: xmsearch model info ./tiny-model
    """
    from xmsearch.retriever.model.checkpoint import locate, read_spec
    from xmsearch.settings import get_settings

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
