"""A validator's judgement of one round, as pure as the work allows: which revealed updates are
valid, what each is worth (Shapley value on the validator's own data), which to include, the
resulting global adapter, and whether to approve it. The agent supplies I/O as two callables."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from edgetune.contribution import ShapleyConfig, ShapleyResult, shapley_values, to_fixed
from edgetune.errors import EdgetuneError
from edgetune.learning import adapter_to_bytes, aggregate, coalition_adapter

Tensors = Mapping[str, torch.Tensor]
FetchUpdate = Callable[[int], Tensors]  # reveal index -> parsed, hash-checked update tensors
Metric = Callable[[Tensors], float]  # global adapter -> validation metric, higher is better


@dataclass(frozen=True)
class Verdict:
    valid_mask: int
    included_mask: int
    scores: list[int]  # fixed-point Shapley value per revealed update (0 for invalid ones)
    aggregate_bytes: bytes
    approve: bool
    shapley: ShapleyResult | None
    previous_metric: float
    new_metric: float
    rejected: dict[int, str]  # reveal index -> why it is invalid


def judge_round(
    previous_global: Tensors,
    revealed: Sequence[int],
    fetch: FetchUpdate,
    metric: Metric,
    harm_tolerance: float,
    shapley_config: ShapleyConfig,
) -> Verdict:
    """`revealed[i]` is update i's sample count, in reveal order."""
    updates, rejected = _fetch_valid(len(revealed), fetch)
    valid = sorted(updates)
    pairs = [(updates[i], revealed[i]) for i in valid]
    previous_metric = metric(previous_global)

    def utility(coalition: frozenset[int]) -> float:
        members = [valid.index(i) for i in coalition]
        return metric(coalition_adapter(previous_global, pairs, members)) - previous_metric

    shapley = shapley_values(valid, utility, shapley_config) if valid else None
    values = shapley.values if shapley else {}
    included = [i for i in valid if values[i] >= -harm_tolerance]
    new_global = aggregate(previous_global, [(updates[i], revealed[i]) for i in included])
    new_metric = metric(new_global)
    return Verdict(
        valid_mask=_mask(valid),
        included_mask=_mask(included),
        scores=[to_fixed(values.get(i, 0.0)) for i in range(len(revealed))],
        aggregate_bytes=adapter_to_bytes(new_global),
        approve=bool(included) and new_metric >= previous_metric - harm_tolerance,
        shapley=shapley,
        previous_metric=previous_metric,
        new_metric=new_metric,
        rejected=rejected,
    )


def _fetch_valid(count: int, fetch: FetchUpdate) -> tuple[dict[int, Tensors], dict[int, str]]:
    """Every update that passes the hash and format checks; the others with the reason."""
    updates, rejected = {}, {}
    for index in range(count):
        try:
            updates[index] = fetch(index)
        except EdgetuneError as error:  # hash mismatch, malformed adapter, missing content
            rejected[index] = str(error)
    return updates, rejected


def _mask(indices: Sequence[int]) -> int:
    return sum(1 << i for i in indices)
