"""`xmsearch train` (fine-tuning on triples) and `xmsearch adapter add` (a new language's adapter):
xmsearch.training, with progress on stderr and the record of the checkpoint written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from xmsearch.cli.output import console, stderr
from xmsearch.cli.root import app

adapter_app = typer.Typer(no_args_is_help=True, help="Language adapters: add one the model lacks.")
app.add_typer(adapter_app, name="adapter")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


def _done(record: dict[str, Any], out: Path, as_json: bool, figures: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False))
        return
    for name, value in figures.items():
        console.print(f"{name}: {value}")
    console.print(f"checkpoint: {out} (how it was made: {out / 'training.json'})")
    console.print(f"to search with it: xmsearch reindex start --model {out}")


@app.command("train")
def train(
    triples: Annotated[Path, typer.Argument(help="JSON Lines {query, positive, negatives[], language?} or TSV.")],
    out: Annotated[Path, typer.Option(help="Folder of the new checkpoint (and of the run's state while it runs).")],
    model: Annotated[str | None, typer.Option(help="The checkpoint to start from (default: XMSEARCH_MODEL).")] = None,
    language: Annotated[str, typer.Option(help="Language of the triples that name none.")] = "en",
    lr: Annotated[float, typer.Option(help="Peak learning rate (the model card's run: 3e-6).")] = 3e-6,
    batch: Annotated[int, typer.Option(min=1, help="Triples per optimizer step.")] = 128,
    micro_batch: Annotated[int, typer.Option(min=1, help="Triples per forward pass (gradients accumulate).")] = 32,
    steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps (default: one pass).")] = None,
    warmup: Annotated[float, typer.Option(min=0, max=1, help="Share of the steps warming up.")] = 0.1,
    negatives: Annotated[int, typer.Option(min=1, help="Negatives per triple.")] = 1,
    in_batch: Annotated[bool, typer.Option(help="Also score against every passage of the batch.")] = True,
    heldout: Annotated[float, typer.Option(min=0, max=0.9, help="Share of the queries held out.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Order of the triples and choice of held-out queries.")] = 12345,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: XMSEARCH_DEVICE).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 or fp16 autocast on a GPU), fp32, bf16, fp16.")] = "auto",
    save_every: Annotated[int, typer.Option(min=1, help="Steps between saves of the run's state.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Fine-tune on triples in one language: the adapters and the embeddings stay frozen, the shared
    weights and the projection learn (ColBERT-XM's recipe). Resumes a stopped run from its last
    saved step; ends with MRR@10 on the held-out queries before and after.

    Example: xmsearch train triples.jsonl --out ./colbert-xm-legal --lr 3e-6 --batch 128 --steps 2000
    """
    from xmsearch.settings import get_settings
    from xmsearch.training.finetune import TrainArgs, finetune

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise typer.BadParameter(f"{precision!r} is not auto, fp32, bf16 or fp16", param_hint="--precision")
    settings = get_settings()
    args = TrainArgs(
        model or settings.model, triples, out, language, lr, batch, micro_batch, steps, warmup, negatives,
        in_batch, heldout, seed, device or settings.device, precision, save_every,  # type: ignore[arg-type]
    )  # fmt: skip
    with _progress() as bar:
        task = bar.add_task("training", total=None, loss=float("nan"), rate="")

        def shown(p: Any) -> None:
            rate = f"{p.examples_per_s:.1f} triples/s, {p.tokens_per_s:.0f} tokens/s"
            bar.update(task, completed=p.step, total=p.steps, loss=p.loss, rate=rate)

        record = finetune(args, shown)
    mrr = record["heldout_mrr_at_10"]
    figures = {
        "steps": record["steps"],
        "loss": f"{record['loss_first']:.4f} -> {record['loss_last']:.4f}",
        "held-out MRR@10": "none held out" if mrr["before"] is None else f"{mrr['before']:.4f} -> {mrr['after']:.4f}",
        "speed": f"{record['examples_per_s']} triples/s, {record['tokens_per_s']} tokens/s on {record['device']}",
    }
    _done(record, out, as_json, figures)


@app.command("mine")
def mine_negatives(
    pairs: Annotated[Path, typer.Argument(help='JSON Lines {"query", "positive", "positive_id"?, "language"?}.')],
    out: Annotated[Path, typer.Option(help="The triples file to write (JSON Lines, as `xmsearch train` reads).")],
    negatives: Annotated[int, typer.Option(min=1, max=64, help="Hard negatives per query.")] = 4,
    skip: Annotated[int, typer.Option(min=0, max=100, help="Top passages passed over (often unjudged positives).")] = 0,
) -> None:
    """Hard negatives from the collection: for each pair, the passages it ranks highest for the query
    that are not the positive.

    Example: xmsearch mine pairs.jsonl --out triples.jsonl --negatives 4 --skip 2
    """
    from xmsearch.retriever.search import Retriever
    from xmsearch.settings import get_settings
    from xmsearch.training.mining import mine, read_pairs

    given = read_pairs(pairs)
    retriever = Retriever.from_settings(get_settings())
    written = 0
    try:
        with out.open("w", encoding="utf-8") as sink, stderr.status(f"mining negatives for {len(given)} queries"):
            for triple in mine(retriever, given, negatives, skip):
                sink.write(json.dumps(triple, ensure_ascii=False) + "\n")
                written += 1
    finally:
        retriever.close()
    console.print(f"{written} triples written to {out} ({len(given) - written} queries had no other passage)")


@adapter_app.command("add")
def adapter_add(
    language: Annotated[str, typer.Option(help="The new language's code (e.g. yo, gsw, ckb).")],
    text: Annotated[Path, typer.Option(help="Unlabeled text in it: one passage per line.")],
    out: Annotated[Path, typer.Option(help="Folder of the new checkpoint.")],
    model: Annotated[str | None, typer.Option(help="The checkpoint to extend (default: XMSEARCH_MODEL).")] = None,
    init: Annotated[str, typer.Option(help="Start from this language's adapter, or 'average' (all).")] = "average",
    steps: Annotated[int, typer.Option(min=1, help="Steps training the adapter.")] = 1000,
    head_steps: Annotated[int, typer.Option(min=0, help="Steps fitting the MLM head first.")] = 200,
    batch: Annotated[int, typer.Option(min=1, help="Lines per step.")] = 32,
    max_tokens: Annotated[int, typer.Option(min=8, help="Tokens per line at most.")] = 128,
    lr: Annotated[float, typer.Option(help="The adapter's learning rate.")] = 1e-4,
    head_lr: Annotated[float, typer.Option(help="The MLM head's learning rate.")] = 1e-3,
    heldout: Annotated[float, typer.Option(min=0.01, max=0.5, help="Share of the lines held out.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Order of the lines, masks, held-out lines.")] = 12345,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N (default: XMSEARCH_DEVICE).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Add a language the model lacks: a new adapter in every layer, trained with masked-language
    modelling on TEXT while every other weight stays frozen. The checkpoint written lists the new
    language, so documents and queries given in it use its adapter.

    Example: xmsearch adapter add --language yo --text yoruba.txt --out ./colbert-xm-yo
    """
    from xmsearch.settings import get_settings
    from xmsearch.training.adapter import AdapterArgs, add_adapter

    settings = get_settings()
    args = AdapterArgs(
        model or settings.model, language, text, out, init, steps, head_steps, batch, max_tokens, lr, head_lr,
        0.15, heldout, seed, device or settings.device,
    )  # fmt: skip
    with _progress() as bar:
        task = bar.add_task("", total=None, loss=float("nan"), rate="")

        def shown(phase: str, p: Any) -> None:
            rate = f"{p.tokens_per_s:.0f} tokens/s"
            bar.update(task, description=phase, completed=p.step, total=p.steps, loss=p.loss, rate=rate)

        record = add_adapter(args, shown)
    loss = record["heldout_mlm_loss"]
    figures = {
        "adapter": f"{record['adapter']} (from {record['init']})",
        "held-out MLM loss": f"{loss['before']:.4f} -> {loss['after']:.4f}",
        "speed": f"{record['tokens_per_s']} tokens/s on {record['device']}",
    }
    _done(record, out, as_json, figures)
