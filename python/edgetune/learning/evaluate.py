"""Validation: mean response-token loss, and accuracy by scoring the candidate labels.

Accuracy scores each candidate response by its total log-likelihood (response tokens + EOS)
after the prompt and picks the best, instead of generating greedily: it needs one forward pass
per candidate, cannot produce an unparseable answer, and is deterministic.
The protocol's metric is higher-is-better: accuracy when the data is labelled, else -loss.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from edgetune.learning.adapter import AdaptedModel
from edgetune.learning.data import Example
from edgetune.learning.errors import DataError
from edgetune.learning.train import IGNORE, collate, encode_pair


@dataclass(frozen=True)
class EvalResult:
    """Validation figures; `metric` is what the protocol compares (higher is better)."""

    loss: float
    accuracy: float | None
    n_examples: int

    @property
    def metric(self) -> float:
        return self.accuracy if self.accuracy is not None else -self.loss


def evaluate(
    adapted: AdaptedModel,
    examples: Sequence[Example],
    adapter: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 64,
    max_length: int = 128,
) -> EvalResult:
    """Evaluate the model (with `adapter` loaded first, if given) on `examples`.

    Candidates for accuracy are the distinct responses of the labelled examples; an example is
    correct when its own response scores highest. Unlabelled sets report accuracy None.
    """
    if not examples:
        raise DataError("evaluate needs at least one example")
    if adapter is not None:
        adapted.set_adapter(adapter)
    candidates = sorted({e.response for e in examples if e.label is not None})
    own = [(e.prompt, e.response) for e in examples]
    scored = [(e.prompt, c) for e in examples if e.label is not None for c in candidates]
    nll = _sequence_nll(adapted, own + scored, batch_size, max_length)
    loss = sum(s for s, _ in nll[: len(own)]) / sum(c for _, c in nll[: len(own)])
    accuracy = None
    if candidates:
        labelled = [e for e in examples if e.label is not None]
        per_example = [
            nll[len(own) + i * len(candidates) :][: len(candidates)] for i in range(len(labelled))
        ]
        hits = sum(
            candidates[min(range(len(candidates)), key=lambda k, row=row: row[k][0])] == e.response
            for e, row in zip(labelled, per_example, strict=True)
        )
        accuracy = hits / len(labelled)
    return EvalResult(loss=loss, accuracy=accuracy, n_examples=len(examples))


@torch.no_grad()
def _sequence_nll(
    adapted: AdaptedModel, pairs: Sequence[tuple[str, str]], batch_size: int, max_length: int
) -> list[tuple[float, int]]:
    """Summed negative log-likelihood and token count of each response given its prompt."""
    rows = [encode_pair(adapted.tokenizer, p, r, max_length) for p, r in pairs]
    adapted.model.eval()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see TrainConfig.threads: spinning threads stall a busy machine
    try:
        return _nll_batches(adapted, rows, batch_size)
    finally:
        torch.set_num_threads(previous_threads)


def _nll_batches(adapted: AdaptedModel, rows: list, batch_size: int) -> list[tuple[float, int]]:
    """Per-row summed response NLL (float64 log-softmax) and response token count."""
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate(rows[start : start + batch_size], adapted.tokenizer.pad_token_id)
        logits = adapted.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        out += labelled_nll(logits, batch["labels"])
    return out


def labelled_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, int]]:
    """Per row: summed NLL (float64 log-softmax) of the labelled tokens, and their count.
    `labels` are aligned with the inputs (IGNORE where not scored); logits predict the next."""
    labels = labels[:, 1:]
    logprobs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    mask = labels != IGNORE
    picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = -(picked * mask).sum(-1)
    return [(float(s), int(c)) for s, c in zip(nll, mask.sum(-1), strict=True)]
