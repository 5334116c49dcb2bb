"""One edge's local round: supervised LoRA fine-tuning on prompt/response pairs.

Loss is on response tokens only. Prompt and response are tokenised separately and concatenated
(plus EOS), so training, scoring and evaluation see exactly the same token sequence.
"""

import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from rich.progress import Progress
from torch.utils.data import WeightedRandomSampler

from edgetune.learning.adapter import AdaptedModel, Tensors
from edgetune.learning.config import TrainConfig
from edgetune.learning.data import Example
from edgetune.learning.errors import DataError
from edgetune.learning.model import deterministic_torch
from edgetune.learning.restricted import RestrictedSoftmax

IGNORE = -100
Row = Any  # one encoded sample, in whatever form the model's collate function takes


@dataclass
class TrainResult:
    """What an edge publishes from a round (`tensors`, `n_samples`) plus diagnostics."""

    tensors: Tensors
    n_samples: int
    wall_s: float
    losses: list[float]


def encode_pair(
    tokenizer: object, prompt: str, response: str, max_length: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels (prompt masked with -100), cut from the left to fit `max_length`."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    ids = (prompt_ids + response_ids)[-max_length:]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[-max_length:]
    return ids, labels


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions are masked out of attention and loss."""
    width = max(len(ids) for ids, _ in rows)
    ids = [r[0] + [pad_id] * (width - len(r[0])) for r in rows]
    labels = [r[1] + [IGNORE] * (width - len(r[1])) for r in rows]
    mask = [[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def train_update(
    adapted: AdaptedModel,
    global_adapter: Mapping[str, torch.Tensor],
    examples: Sequence[Example],
    config: TrainConfig,
) -> TrainResult:
    """Train from `global_adapter` on `examples`; return the exchanged tensors (B only in "ffa").

    Seeded (see `fit`): the same inputs on the same CPU give the same update.
    """
    if not examples:
        raise DataError("train_update needs at least one example")
    rows = [
        encode_pair(adapted.tokenizer, e.prompt, e.response, config.max_length) for e in examples
    ]
    pad_id = adapted.tokenizer.pad_token_id
    return train_adapter(adapted, global_adapter, rows, partial(collate, pad_id=pad_id), config)


def train_adapter(
    adapted: AdaptedModel,
    global_adapter: Mapping[str, torch.Tensor],
    rows: Sequence[Row],
    collate_batch: Callable[[list[Row]], dict[str, torch.Tensor]],
    config: TrainConfig,
    weights: Sequence[float] | None = None,
) -> TrainResult:
    """One round of any adapted model from `global_adapter` on encoded `rows` (one per sample):
    `fit` over its trainable parameters; returns the exchanged tensors (B only in "ffa")."""
    adapted.set_adapter(global_adapter)
    start = time.perf_counter()
    losses = fit(
        adapted.model, rows, collate_batch, trainable_parameters(adapted.model), config, weights
    )
    wall = time.perf_counter() - start
    return TrainResult(adapted.get_adapter(trained_only=True), len(rows), wall, losses)


def fit(
    model: torch.nn.Module,
    rows: Sequence[Row],
    collate_batch: Callable[[list[Row]], dict[str, torch.Tensor]],
    params: list[torch.nn.Parameter],
    config: TrainConfig,
    weights: Sequence[float] | None = None,
) -> list[float]:
    """The one training loop (text and vision, LoRA rounds and pre-training): seeded AdamW over
    `params` for `config.steps` batches of `batch_order`, each made by `collate_batch` into the
    model's keyword arguments (labels included); returns the per-step losses.

    Seeded batches, dropout and kernels: the same inputs on the same CPU give the same losses.
    """
    losses: list[float] = []
    with deterministic_torch(config.seed, threads=config.threads):
        generator = torch.Generator().manual_seed(config.seed)
        order = batch_order(len(rows), config, generator, weights)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        anchor = [p.detach().clone() for p in params] if config.prox_mu else []
        device = params[0].device
        model.train()
        with (
            Progress(disable=not config.progress, transient=True) as progress,
            RestrictedSoftmax(model, config.lacking_answers) as restricted,
        ):
            task = progress.add_task("training", total=config.steps)
            for batch_ids in order:
                batch = collate_batch([rows[i] for i in batch_ids])
                batch = {k: v.to(device) for k, v in batch.items()}
                restricted.prepare(batch)
                loss = model(**batch).loss
                if anchor:
                    loss = loss + proximal_term(params, anchor, config.prox_mu)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                progress.update(task, advance=1, description=f"training loss {losses[-1]:.3f}")
        model.eval()
    return losses


def proximal_term(
    params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor], mu: float
) -> torch.Tensor:
    """FedProx's mu/2 * ||w - w_start||^2 over the trained parameters (anchor: their values
    when the round began, i.e. the global adapter)."""
    return 0.5 * mu * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """What the optimiser updates: the parameters left trainable (LoRA's, or unfrozen modules)."""
    return [p for p in model.parameters() if p.requires_grad]


def batch_order(
    n: int,
    config: TrainConfig,
    generator: torch.Generator,
    weights: Sequence[float] | None = None,
) -> list[list[int]]:
    """`config.steps` batches of indices into `n` examples, drawn from `generator`.

    Unweighted: epoch by epoch from seeded permutations (every example seen evenly). Weighted:
    each index drawn with probability proportional to its weight, with replacement
    (`WeightedRandomSampler`), e.g. `class_balanced_weights` to see every class equally often.
    """
    size = min(config.batch_size, n)
    if weights is not None:
        if len(weights) != n:
            raise DataError(f"{len(weights)} sample weights for {n} examples")
        sampler = WeightedRandomSampler(weights, config.steps * size, generator=generator)
        stream = list(sampler)
    else:
        stream = []
        while len(stream) < config.steps * size:
            stream += torch.randperm(n, generator=generator).tolist()
    return [stream[i * size : (i + 1) * size] for i in range(config.steps)]


def class_balanced_weights(classes: Sequence[Hashable]) -> list[float]:
    """Per example, 1 / (examples of its class): every class drawn equally often.

    An edge's own case mix is skewed (non-IID); trained on it as is, its update mostly teaches
    its own class prior, which averaging cannot undo (label-skew client drift).
    """
    counts = Counter(classes)
    return [1.0 / counts[c] for c in classes]
