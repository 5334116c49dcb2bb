"""A restricted softmax over answer candidates for label-skewed edges (FedRS's idea, in the
answer-token setting).

An edge whose cases never show some label still trains the model's softmax to rule that
label's answer out: wherever a training answer and the absent label's candidate answer part
ways ("Diagnosis: p|neumothorax" against "Diagnosis: c|ardiomegaly"), the candidate's next token
is pushed down. Averaged over edges, that forgets the label some edge lacks. Here the output
head's logit of that token, at that position only, gets a large negative offset while the edge
trains, so its share of the softmax is ~0 and its gradient vanishes; every other token and
position trains as before. The candidates and what an edge lacks come from the edge's own
labels (`lacking_answer_ids`), never from anyone else's data.
"""

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import torch

LACKING_OFFSET = -30.0  # exp(-30) ~ 1e-13: the token all but leaves the softmax


def lacking_answer_ids(
    tokenizer: Any, candidates: Mapping[str, str], present: Iterable[str]
) -> tuple[tuple[int, ...], ...]:
    """Token ids of each candidate answer (label -> answer) whose label is not in `present`."""
    have = set(present)
    return tuple(
        tuple(tokenizer(answer, add_special_tokens=False)["input_ids"])
        for label, answer in candidates.items()
        if label not in have
    )


def divergence_offsets(
    labels: torch.Tensor, lacking: Sequence[Sequence[int]]
) -> list[tuple[int, int, int]]:
    """(row, logit position, token id) for every place a row's answer and a lacking answer
    part ways: after their common prefix, the lacking answer's next token.

    `labels` is the batch's (rows x length) labels, prompt and padding negative (the loss's
    ignore index); the model's logits at position t predict labels[t + 1] (the causal shift)."""
    out = []
    for row, row_labels in enumerate(labels.tolist()):
        positions = [t for t, token in enumerate(row_labels) if token >= 0]
        answer = [row_labels[t] for t in positions]
        for candidate in lacking:
            shared = _common_prefix(answer, candidate)
            if shared < min(len(answer), len(candidate)) and positions[shared] > 0:
                out.append((row, positions[shared] - 1, candidate[shared]))
    return sorted(set(out))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class RestrictedSoftmax:
    """While entered, offsets the output head's logits at the places `prepare` found in the
    current batch (`divergence_offsets`); with no lacking answers it does nothing."""

    def __init__(
        self,
        model: torch.nn.Module,
        lacking: Sequence[Sequence[int]],
        offset: float = LACKING_OFFSET,
    ) -> None:
        self._model, self._lacking, self._offset = model, lacking, offset
        self._places: tuple[torch.Tensor, ...] = ()
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> "RestrictedSoftmax":
        if self._lacking:
            head = self._model.get_output_embeddings()
            self._handle = head.register_forward_hook(self._offset_logits)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def prepare(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Find the places to offset in the batch about to be run (the model's keyword
        arguments, "labels" among them; only read when there are lacking answers)."""
        if not self._lacking:
            return
        places = divergence_offsets(batch["labels"], self._lacking)
        self._places = tuple(torch.tensor(column) for column in zip(*places, strict=True))

    def _offset_logits(
        self, _module: torch.nn.Module, _inputs: object, logits: torch.Tensor
    ) -> torch.Tensor:
        if not self._places:
            return logits
        shift = torch.full((len(self._places[0]),), self._offset, dtype=logits.dtype)
        return logits.index_put(self._places, shift, accumulate=True)
