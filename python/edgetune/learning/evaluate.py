"""Validation: mean response-token loss, and accuracy by scoring the candidate labels.

Accuracy scores each candidate response by its total log-likelihood (response tokens + EOS)
after the prompt and picks the best, instead of generating greedily: it needs one forward pass
per candidate, cannot produce an unparseable answer, and is deterministic.
The protocol's metric is higher-is-better: accuracy when the data is labelled, else -loss.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from edgetune.learning.adapter import AdaptedModel
from edgetune.learning.data import Example
from edgetune.learning.errors import DataError
from edgetune.learning.train import IGNORE, collate, encode_pair

Prompt = TypeVar("Prompt")


@dataclass(frozen=True)
class CandidateScoring(Generic[Prompt]):
    """Accuracy by candidate likelihood, for any model: each prompt is paired with every
    candidate answer (`queries`), the caller scores each pair's summed answer NLL with its own
    model, and the candidate with the lowest NLL is the prediction (`predictions`; ties go to
    the first name in sorted order).

    Text and vision models share this; only how a (prompt, answer) pair becomes an NLL differs.
    """

    candidates: Mapping[str, str]  # name -> answer text

    @property
    def names(self) -> list[str]:
        return sorted(self.candidates)

    def queries(self, prompts: Sequence[Prompt]) -> list[tuple[Prompt, str]]:
        """Every (prompt, candidate answer), prompt-major, candidates in `names` order."""
        return [(p, self.candidates[n]) for p in prompts for n in self.names]

    def predictions(self, nll: Sequence[float]) -> list[str]:
        """Per prompt, the name of the lowest-NLL candidate; `nll` follows `queries`' order."""
        names = self.names
        return [
            names[int(np.argmin(nll[i : i + len(names)]))] for i in range(0, len(nll), len(names))
        ]


def candidate_predictions(
    nll: Callable[[list[tuple[Prompt, str]]], Sequence[float]],
    prompts: Sequence[Prompt],
    candidates: Mapping[str, str],
) -> list[str]:
    """Per prompt, the candidate name (see `CandidateScoring`) whose answer `nll` scores lowest."""
    scoring = CandidateScoring(candidates)
    return scoring.predictions(nll(scoring.queries(prompts)))


def hit_rate(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Fraction of positions where the prediction is the truth."""
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


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
    labelled = [e for e in examples if e.label is not None]
    scoring = CandidateScoring({e.response: e.response for e in labelled})
    own = [(e.prompt, e.response) for e in examples]
    # One pass over own rows and candidates: batch composition moves the NLLs in the 6th digit.
    nll = _sequence_nll(
        adapted, own + scoring.queries([e.prompt for e in labelled]), batch_size, max_length
    )
    loss = sum(s for s, _ in nll[: len(own)]) / sum(c for _, c in nll[: len(own)])
    accuracy = None
    if labelled:
        predicted = scoring.predictions([s for s, _ in nll[len(own) :]])
        accuracy = hit_rate(predicted, [e.response for e in labelled])
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
