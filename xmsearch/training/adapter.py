"""`xmsearch adapter add`: XMOD's post-hoc addition of a language. A new adapter is added to every
layer, started from a related language's adapter or from the mean of them all, and trained with
masked-language modelling on unlabeled text while every other weight stays frozen (the shared
transformer, the embeddings, every existing adapter, the projection). The checkpoint has no MLM
head, so one is built for training (its decoder tied to the frozen embeddings): it is first fitted
alone with the starting adapter, then frozen while the adapter learns, so that the held-out loss
measured before and after is the adapter's doing. The head is dropped; the checkpoint written has
the new code in `config.languages`, so that routing and language codes know it."""

from __future__ import annotations

import copy
import importlib.metadata
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langcodes
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast
from transformers.models.xmod.modeling_xmod import XmodLMHead

from xmsearch.evaluation.data import numbered_lines
from xmsearch.retriever.errors import InvalidInputError
from xmsearch.retriever.model.checkpoint import POSITION_OFFSET, TOKENIZER_FILE
from xmsearch.retriever.model.languages import is_language
from xmsearch.training.model import Progress, TrainableColbert, save
from xmsearch.training.triples import digest

AVERAGE = "average"
EVAL_BATCH = 32


@dataclass(frozen=True)
class AdapterArgs:
    model: str
    language: str  # the new language, e.g. yo
    text: Path  # unlabeled text in it, one passage per line
    out: Path
    init: str = AVERAGE  # the adapter it starts from: a language of the checkpoint, or the mean of all
    steps: int = 1000
    head_steps: int = 200  # fitting the MLM head alone first, with the starting adapter
    batch: int = 32
    max_tokens: int = 128
    lr: float = 1e-4
    head_lr: float = 1e-3
    mask_probability: float = 0.15
    heldout: float = 0.1  # share of the lines kept for the held-out loss
    seed: int = 12345
    device: str = "auto"


def add_adapter(
    args: AdapterArgs, on_progress: Callable[[str, Progress], None] = lambda phase, p: None
) -> dict[str, Any]:
    """Train the new adapter, write the checkpoint to `args.out`, and return its record."""
    model = TrainableColbert(args.model, args.device, lambda name: False, projection=False)
    code = _adapter_code(model, args.language)
    source = _starting_adapter(model, args.init)
    for layer in model.backbone.encoder.layer:
        adapters = layer.output.adapter_modules
        adapters[code] = _started(adapters, source)
    new_index = len(model.spec.languages)
    head = _head(model)
    texts = _lines(args.text)
    rng = random.Random(args.seed)
    rng.shuffle(texts)
    held = texts[: round(len(texts) * args.heldout)] if args.heldout > 0 else []
    train = texts[len(held) :]
    if not train or not held:
        raise InvalidInputError(f"{args.text}: {len(texts)} lines are too few to train on and hold some out")
    collator = _collator(model, args.mask_probability)
    torch.manual_seed(args.seed)
    heldout_batches = [
        collator(_encode(model, held[i : i + EVAL_BATCH], args.max_tokens)) for i in range(0, len(held), EVAL_BATCH)
    ]
    run = _Run(model, head, collator, train, new_index, args)
    adapter = [p for layer in model.backbone.encoder.layer for p in layer.output.adapter_modules[code].parameters()]
    for parameter in adapter:
        parameter.requires_grad_(False)  # the head learns alone first, on the starting adapter
    run.train("head", head.parameters(), args.head_steps, args.head_lr, on_progress)
    head.requires_grad_(False)
    before = run.loss(heldout_batches)
    for parameter in adapter:
        parameter.requires_grad_(True)
    losses = run.train("adapter", adapter, args.steps, args.lr, on_progress)
    after = run.loss(heldout_batches)
    config = dict(model.spec.config)
    config["languages"] = [*model.spec.languages, code]
    record = {
        "base_model": model.spec.model_id,
        "recipe": "xmod post-hoc language: a new adapter trained with masked-language modelling, all else frozen",
        "language": args.language,
        "adapter": code,
        "init": source if isinstance(source, str) else AVERAGE,
        "text": str(args.text),
        "text_sha256": digest(args.text),
        "train_lines": len(train),
        "heldout_lines": len(held),
        "steps": args.steps,
        "head_steps": args.head_steps,
        "batch": args.batch,
        "lr": args.lr,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "heldout_mlm_loss": {"before": before, "after": after},
        "device": str(model.device),
        "tokens_per_s": run.tokens_per_s,
        "xmsearch": importlib.metadata.version("xmsearch"),
    }
    save(model, args.out, record, config)
    return record


def _adapter_code(model: TrainableColbert, language: str) -> str:
    """The new adapter's name in the checkpoint's style (yo -> yo_NG), refusing a language it has."""
    if not is_language(language):
        raise InvalidInputError(f"{language!r} is not a language code (e.g. yo, gsw, ckb)")
    existing = model.languages.lookup(language)
    if existing is not None:
        raise InvalidInputError(f"{model.spec.name} already has an adapter for {language}: {existing}")
    tag = langcodes.Language.get(language)
    region = tag.maximize().territory or "XX"
    return f"{tag.language}_{region}"


def _starting_adapter(model: TrainableColbert, init: str) -> str | None:
    """The adapter the new one copies (None: the mean of every adapter)."""
    if init == AVERAGE:
        return None
    found = model.languages.lookup(init) if is_language(init) else None
    if found is None:
        raise InvalidInputError(f"--init {init}: not a language of {model.spec.name} (nor {AVERAGE})")
    return found


def _started(adapters: torch.nn.ModuleDict, source: str | None) -> torch.nn.Module:
    """A copy of `source`'s adapter, or of the first one with every weight the mean of all."""
    new = copy.deepcopy(adapters[source] if source is not None else next(iter(adapters.values())))
    if source is None:
        states = [module.state_dict() for module in adapters.values()]
        new.load_state_dict({k: torch.stack([s[k] for s in states]).mean(dim=0) for k in states[0]})
    return new


def _head(model: TrainableColbert) -> XmodLMHead:
    """An MLM head for training: dense and layer norm learn, the decoder is the frozen embeddings."""
    head = XmodLMHead(model.backbone.config).to(model.device)
    head.decoder.weight = model.backbone.embeddings.word_embeddings.weight
    head.bias.data.zero_()
    return head


def _collator(model: TrainableColbert, probability: float) -> DataCollatorForLanguageModeling:
    """BERT's masking (of the chosen tokens: 80% <mask>, 10% random, 10% kept) with this tokenizer."""
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>"}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(model.spec.path / TOKENIZER_FILE),
        pad_token="<pad>",
        mask_token="<mask>",
        cls_token="<s>",
        **specials,
    )
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, return_tensors="pt")


def _lines(path: Path) -> list[str]:
    lines = [line.strip() for _, line in numbered_lines(path)]
    if not lines:
        raise InvalidInputError(f"{path}: no text")
    return lines


def _encode(model: TrainableColbert, texts: list[str], max_tokens: int) -> list[dict[str, list[int]]]:
    """Each text as <s> ... </s>, cut to `max_tokens` (and to the model's positions), </s> kept last."""
    limit = min(max_tokens, int(model.spec.config.get("max_position_embeddings", 514)) - POSITION_OFFSET)
    encoded = [e.ids for e in model.tokenizer.tokenizer.encode_batch(texts)]
    return [{"input_ids": ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]} for ids in encoded]


class _Run:
    """The masked-language-modelling loop over the training lines, with the new adapter's lang id."""

    def __init__(
        self, model: TrainableColbert, head: XmodLMHead, collator: Any, lines: list[str], lang: int, args: AdapterArgs
    ) -> None:
        self.model, self.head, self.collator, self.lines, self.lang, self.args = (
            model,
            head,
            collator,
            lines,
            lang,
            args,
        )
        self.tokens_per_s = 0.0

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        order = random.Random(self.args.seed)
        while True:
            picked = order.sample(self.lines, min(self.args.batch, len(self.lines)))
            yield self.collator(_encode(self.model, picked, self.args.max_tokens))

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"].to(self.model.device)
        mask = batch["attention_mask"].to(self.model.device)
        lang_ids = torch.full((len(ids),), self.lang, dtype=torch.long, device=self.model.device)
        hidden = self.model.backbone(input_ids=ids, attention_mask=mask, lang_ids=lang_ids).last_hidden_state
        labels = batch["labels"].to(self.model.device)
        masked = labels != -100  # the vocabulary's logits only where a token is to be guessed (15%)
        return torch.nn.functional.cross_entropy(self.head(hidden[masked]), labels[masked])

    def train(
        self, phase: str, parameters: Any, steps: int, lr: float, on_progress: Callable[[str, Progress], None]
    ) -> list[float]:
        optimizer = torch.optim.AdamW(list(parameters), lr=lr)
        self.model.train()
        self.head.train()
        losses: list[float] = []
        began, tokens = time.perf_counter(), 0
        for step, batch in zip(range(steps), self._batches(), strict=False):
            optimizer.zero_grad(set_to_none=True)
            loss = self._forward(batch)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            tokens += int(batch["attention_mask"].sum())
            seconds = time.perf_counter() - began
            self.tokens_per_s = round(tokens / seconds, 1)
            on_progress(
                phase, Progress(step + 1, steps, losses[-1], (step + 1) * self.args.batch / seconds, tokens / seconds)
            )
        return losses

    @torch.no_grad()
    def loss(self, batches: list[dict[str, torch.Tensor]]) -> float:
        """The mean masked-token loss over the held-out lines (the same masks every time)."""
        self.model.eval()
        self.head.eval()
        masked = [int((b["labels"] != -100).sum()) for b in batches]
        total = sum(float(self._forward(b)) * n for b, n in zip(batches, masked, strict=True))
        return total / max(1, sum(masked))
