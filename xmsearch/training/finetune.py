"""`xmsearch train`: ColBERT-XM's recipe on the user's triples in one language. The language adapters
and the embeddings stay frozen; the shared transformer weights and the projection learn with
colbert-ai's loss: a softmax cross-entropy over each query's positive and its negatives, plus one
over every passage of the batch (in-batch negatives). AdamW with a linear warm-up and decay,
gradient accumulation up to the batch, mixed precision on a GPU. The run saves its state every
`save_every` steps and resumes from it; at the end it measures MRR@10 on the held-out queries against
the starting model's and writes the checkpoint with a record of how it was trained."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import get_linear_schedule_with_warmup

from xmsearch.evaluation.scores import score
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.training.model import Progress, TrainableColbert, maxsim, save
from xmsearch.training.triples import Triple, digest, hold_out, read_triples

log = logging.getLogger(__name__)
STATE_FILE = "train-state.pt"  # in the output folder while a run is under way
FROZEN = ("embeddings.", ".adapter_modules.", "pooler.")  # the adapters, the embeddings, and what is unused
CLIP_NORM = 2.0  # colbert-ai's gradient clipping
SCORE_CHUNK = 64  # held-out passages encoded per forward pass


def shared_weight(name: str) -> bool:
    """Whether a backbone weight is one that every language shares (and so learns here)."""
    return not any(part in name or name.startswith(part) for part in FROZEN)


@dataclass(frozen=True)
class TrainArgs:
    model: str
    triples: Path
    out: Path
    language: str = "en"
    lr: float = 3e-6
    batch: int = 128  # triples per optimizer step
    micro_batch: int = 32  # triples per forward pass: gradients accumulate up to `batch`
    steps: int | None = None  # None: one pass over the training triples
    warmup: float = 0.1
    negatives: int = 1  # per triple (colbert-ai's nway is 1 + negatives)
    in_batch: bool = True
    heldout: float = 0.1
    seed: int = 12345
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # a GPU's autocast; a CPU trains in fp32
    save_every: int = 200

    def resumable(self) -> dict[str, Any]:
        """What a saved run must share with this one to go on from it."""
        return {k: str(v) for k, v in dataclasses.asdict(self).items() if k not in ("out", "save_every", "device")}


def finetune(args: TrainArgs, on_progress: Callable[[Progress], None] = lambda p: None) -> dict[str, Any]:
    """Train, write the checkpoint to `args.out`, and return its record."""
    train, held = hold_out(read_triples(args.triples, args.language), args.heldout, args.seed)
    if not train:
        raise InvalidInputError(f"{args.triples}: no triple left to train on after holding {args.heldout:.0%} out")
    negatives = min(args.negatives, *(len(t.negatives) for t in train))
    model = TrainableColbert(args.model, args.device, shared_weight)
    for language in sorted({t.language for t in train + held}):
        model.adapter_index(language)  # an unknown language fails now, not at step 1000
    steps = args.steps or math.ceil(len(train) / args.batch)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    schedule = get_linear_schedule_with_warmup(optimizer, round(steps * args.warmup), steps)
    autocast, scaler = _mixed_precision(model.device, args.precision)
    state_file = args.out / STATE_FILE
    start, before, losses = 0, None, list[float]()
    if state_file.is_file():
        state = torch.load(state_file, map_location=model.device, weights_only=False)
        if state["args"] != args.resumable():
            raise InvalidInputError(
                f"{args.out} holds a run with other arguments: give another --out, or remove {state_file} to start over"
            )
        model.load_state_dict(state["model"], strict=False)  # the trainable weights; the rest are the base's
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, before, losses = state["step"], state["before"], state["losses"]
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])  # the same dropout as a run that never stopped
        if model.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], model.device)
        log.info("resuming %s at step %d of %d", args.out, start, steps)
    else:
        before = heldout_mrr(model, held)
        torch.manual_seed(args.seed)  # dropout: the same run for the same arguments
    began, examples, tokens = time.perf_counter(), 0, 0
    for step in range(start, steps):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        batch = [train[i] for i in _positions(len(train), step, args.batch, args.seed)]
        total = 0.0
        for first in range(0, len(batch), args.micro_batch):
            micro = batch[first : first + args.micro_batch]
            with autocast():
                loss, used = _loss(model, micro, negatives, args.in_batch)
            scaled = loss * len(micro) / len(batch)
            (scaler.scale(scaled) if scaler else scaled).backward()
            total += float(scaled.detach())
            tokens += used
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], CLIP_NORM)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        schedule.step()
        losses.append(total)
        examples += len(batch)
        seconds = time.perf_counter() - began
        on_progress(Progress(step + 1, steps, total, examples / seconds, tokens / seconds))
        if (step + 1) % args.save_every == 0 and step + 1 < steps:
            _save_state(state_file, args, model, (optimizer, schedule, scaler), step + 1, before, losses)
    seconds = time.perf_counter() - began
    record = {
        "base_model": model.spec.model_id,
        "recipe": "colbert-xm: adapters and embeddings frozen; shared weights and projection trained",
        "triples": str(args.triples),
        "triples_sha256": digest(args.triples),
        "train_triples": len(train),
        "heldout_triples": len(held),
        **{k: v for k, v in dataclasses.asdict(args).items() if k not in ("model", "triples", "out", "device")},
        "negatives_used": negatives,
        "steps": steps,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "heldout_mrr_at_10": {"before": before, "after": heldout_mrr(model, held)},
        "device": str(model.device),
        "seconds": round(seconds, 1),
        "examples_per_s": round(examples / seconds, 2) if examples else None,
        "tokens_per_s": round(tokens / seconds, 1) if examples else None,
        "xmsearch": importlib.metadata.version("xmsearch"),
    }
    save(model, args.out, record)
    state_file.unlink(missing_ok=True)
    return record


def _positions(n: int, step: int, batch: int, seed: int) -> Iterator[int]:
    """The triples of one step: each epoch is a fresh permutation of the seed, so a run resumed at
    any step sees the same triples as one that was never stopped."""
    for index in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(index, n)
        yield _permutation(n, seed + epoch)[offset]


@functools.lru_cache(maxsize=2)
def _permutation(n: int, seed: int) -> list[int]:
    return random.Random(seed).sample(range(n), n)


def _loss(model: TrainableColbert, triples: list[Triple], negatives: int, in_batch: bool) -> tuple[torch.Tensor, int]:
    """colbert-ai's loss for these triples, and the tokens encoded."""
    lang_ids = [model.adapter_index(t.language) for t in triples]
    queries = model.queries([t.query for t in triples], lang_ids)
    nway = 1 + negatives
    passages = [text for t in triples for text in (t.positive, *t.negatives[:negatives])]
    documents, keep = model.documents(passages, [i for i in lang_ids for _ in range(nway)])
    scores = maxsim(queries, documents, keep)  # (queries, passages of the batch)
    n = len(triples)
    own = scores.view(n, n, nway)[torch.arange(n), torch.arange(n)]  # each query against its own passages
    targets = torch.zeros(n, dtype=torch.long, device=scores.device)
    loss = torch.nn.functional.cross_entropy(own, targets)
    if in_batch and n > 1:
        loss = loss + torch.nn.functional.cross_entropy(scores, torch.arange(n, device=scores.device) * nway)
    return loss, int(keep.sum()) + queries.shape[0] * queries.shape[1]


@torch.no_grad()
def heldout_mrr(model: TrainableColbert, held: list[Triple]) -> float | None:
    """MRR@10 of the held-out queries, each ranking every held-out passage (None: nothing held out)."""
    if not held:
        return None
    model.eval()
    adapters = {text: model.adapter_index(t.language) for t in held for text in (t.query, t.positive, *t.negatives)}
    passages = list(dict.fromkeys(text for t in held for text in (t.positive, *t.negatives)))
    ids = {text: f"p{i}" for i, text in enumerate(passages)}
    queries = list(dict.fromkeys(t.query for t in held))
    encoded = model.queries(queries, [adapters[q] for q in queries])
    columns = []
    for first in range(0, len(passages), SCORE_CHUNK):
        chunk = passages[first : first + SCORE_CHUNK]
        documents, keep = model.documents(chunk, [adapters[p] for p in chunk])
        columns.append(maxsim(encoded, documents, keep))
    scores = torch.cat(columns, dim=1).cpu()
    ranking = {f"q{i}": {ids[p]: float(s) for p, s in zip(passages, row, strict=True)} for i, row in enumerate(scores)}
    qrels: dict[str, dict[str, int]] = {}
    for t in held:
        qrels.setdefault(f"q{queries.index(t.query)}", {})[ids[t.positive]] = 1
    return score(qrels, ranking, {}).overall["MRR@10"]


def _mixed_precision(device: torch.device, precision: str) -> tuple[Callable[[], Any], torch.amp.GradScaler | None]:
    """A GPU's autocast (bf16 where it has it, else fp16 with a gradient scaler); a CPU trains in fp32."""
    if device.type != "cuda" or precision == "fp32":
        return nullcontext, None
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return lambda: torch.autocast("cuda", dtype=dtype), scaler


def _save_state(
    path: Path,
    args: TrainArgs,
    model: TrainableColbert,
    optimizing: tuple[torch.optim.Optimizer, Any, torch.amp.GradScaler | None],
    step: int,
    before: float | None,
    losses: list[float],
) -> None:
    """The run so far (the trainable weights, the optimizer, schedule and scaler, the random state),
    written whole or not at all."""
    optimizer, schedule, scaler = optimizing
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    state: dict[str, Any] = {"args": args.resumable(), "step": step, "before": before, "losses": losses}
    state["rng"] = torch.get_rng_state()
    if model.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(model.device)
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    state["model"] = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    torch.save({**state, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, partial)
    partial.replace(path)
