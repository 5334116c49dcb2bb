"""A validator's two judgements of a round (protocol v2), as pure as the work allows.

Stage 1, `score_round`: which revealed updates pass the hash and format checks, which are near
copies of an earlier one, and what each remaining one is worth: its Shapley value on this
validator's data. Revealed on chain as (valid_mask, copy_mask, scores); the contract turns every
validator's scores into medians and fixes the included set.

Stage 2, `attest_round`: given that on-chain included set, the aggregate G(r) (bit-exact, so all
honest validators attest the same hash) and whether this validator approves it.

The agent supplies the I/O as callables: `fetch(i)` returns update i's parsed, hash-checked
tensors or raises an `EdgetuneError`; `metric(adapter)` scores a global adapter on private data.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from edgetune.contribution import (
    COPY_THRESHOLD,
    ShapleyConfig,
    ShapleyResult,
    check_copy_threshold,
    near_copies,
    shapley_values,
    to_fixed,
)
from edgetune.errors import EdgetuneError
from edgetune.learning import (
    adapter_to_bytes,
    coalition_adapter,
    momentum_aggregate,
    update_delta,
)

Tensors = Mapping[str, torch.Tensor]
FetchUpdate = Callable[[int], Tensors]  # reveal index -> parsed, hash-checked update tensors
Metric = Callable[[Tensors], float]  # global adapter -> validation metric, higher is better


class AttestationError(EdgetuneError, ValueError):
    """The on-chain included set names an update this validator cannot aggregate."""


@dataclass(frozen=True)
class Scorecard:
    """Stage 1, revealed on chain as (valid_mask, copy_mask, scores).

    Attributes:
        valid_mask: bit i set when revealed update i passed the hash and format checks.
        copy_mask: bit i set when update i is a near copy of an earlier-revealed valid update
            that is not itself a copy (valid, but unpaid).
        scores: fixed-point (`to_fixed`, millionths) Shapley value per revealed update, over the
            valid non-copy set V; 0 for invalid updates and copies.
        shapley: the Shapley computation over V (None when V is empty).
        rejected: reveal index -> why the update is invalid.
        updates: the parsed valid updates by reveal index, copies included, for stage 2.
    """

    valid_mask: int
    copy_mask: int
    scores: list[int]
    shapley: ShapleyResult | None
    rejected: dict[int, str]
    updates: dict[int, Tensors]


@dataclass(frozen=True)
class Attestation:
    """Stage 2: the aggregate over the on-chain included set, and this validator's verdict.

    Attributes:
        aggregate_bytes: canonical bytes of G(r), the aggregate over the included updates.
        approve: included is non-empty and new_metric >= previous_metric - harm_tolerance.
        previous_metric: metric of G(r-1) on this validator's data.
        new_metric: metric of G(r) on this validator's data.
    """

    aggregate_bytes: bytes
    approve: bool
    previous_metric: float
    new_metric: float


def score_round(
    previous_global: Tensors,
    count: int,
    fetch: FetchUpdate,
    metric: Metric,
    shapley_config: ShapleyConfig,
    copy_threshold: float = COPY_THRESHOLD,
) -> Scorecard:
    """Stage 1 over the `count` revealed updates (reveal indices 0..count-1).

    The utility of a coalition S of V is metric(G + sum_{j in S} dU_j / |V|) - metric(G): the
    weights are normalised over V, so a zero update is an exact null player (score 0) and the
    grand coalition is the FedAvg of V.
    """
    check_copy_threshold(copy_threshold)
    updates, rejected = _fetch_valid(previous_global, count, fetch)
    deltas = {i: update_delta(previous_global, u) for i, u in updates.items()}
    copies = near_copies(deltas, copy_threshold)
    players = [i for i in sorted(updates) if i not in copies]
    shapley = None
    if players:
        previous_metric = metric(previous_global)
        members = [updates[i] for i in players]
        position = {index: p for p, index in enumerate(players)}

        def utility(coalition: frozenset[int]) -> float:
            chosen = [position[i] for i in coalition]
            return metric(coalition_adapter(previous_global, members, chosen)) - previous_metric

        shapley = shapley_values(players, utility, shapley_config)
    values = shapley.values if shapley else {}
    return Scorecard(
        valid_mask=_mask(updates),
        copy_mask=_mask(copies),
        scores=[to_fixed(values.get(i, 0.0)) for i in range(count)],
        shapley=shapley,
        rejected=rejected,
        updates=updates,
    )


def attest_round(
    previous_global: Tensors,
    updates: Mapping[int, Tensors],
    included: Sequence[int],
    metric: Metric,
    harm_tolerance: float,
    before_previous: Tensors | None = None,
    server_momentum: float = 0.0,
) -> Attestation:
    """Stage 2: G(r) over the on-chain `included` reveal indices, aggregated in reveal order,
    plus the task's server momentum times G(r-1) - G(r-2) (`before_previous` is G(r-2), None
    in round 1). Stage 1 scores the averaged step alone: the momentum term is the same for
    every coalition of the round and is nobody's contribution.

    Raises AttestationError when `included` repeats an index or names one missing from
    `updates` (this validator found it invalid, the chain did not): no honest aggregate can be
    built from what this validator holds, and a guessed one would only split the vote.
    """
    chosen = sorted(included)
    if len(set(chosen)) != len(chosen):
        raise AttestationError(f"included set repeats reveal indices: {list(included)}")
    missing = [i for i in chosen if i not in updates]
    if missing:
        raise AttestationError(f"included updates {missing} are not among the valid updates held")
    new_global = momentum_aggregate(
        previous_global, before_previous, [updates[i] for i in chosen], server_momentum
    )
    previous_metric = metric(previous_global)
    # With nothing included G(r) is G(r-1), byte for byte: no second evaluation needed.
    new_metric = metric(new_global) if chosen else previous_metric
    return Attestation(
        aggregate_bytes=adapter_to_bytes(new_global),
        approve=bool(chosen) and new_metric >= previous_metric - harm_tolerance,
        previous_metric=previous_metric,
        new_metric=new_metric,
    )


def _fetch_valid(
    previous_global: Tensors, count: int, fetch: FetchUpdate
) -> tuple[dict[int, Tensors], dict[int, str]]:
    """Every update that passes the hash and format checks; the others with the reason."""
    updates, rejected = {}, {}
    for index in range(count):
        try:
            update = fetch(index)
        except EdgetuneError as error:  # hash mismatch, malformed adapter, missing content
            rejected[index] = str(error)
            continue
        mismatch = _shape_mismatch(previous_global, update)
        if mismatch:
            rejected[index] = mismatch
        else:
            updates[index] = update
    return updates, rejected


def _shape_mismatch(previous_global: Tensors, update: Tensors) -> str | None:
    """Why `update` cannot be averaged into `previous_global`, if it cannot (else None).

    `fetch` already checks the layout against the adapter spec; this keeps a lax `fetch` from
    crashing the Shapley utility on a key the global lacks or a tensor of the wrong shape.
    """
    if not update:
        return "update carries no tensors"
    for key in sorted(update):
        if key not in previous_global:
            return f"update has key {key} absent from the global adapter"
        if tuple(update[key].shape) != tuple(previous_global[key].shape):
            return f"update tensor {key} has shape {tuple(update[key].shape)}"
    return None


def _mask(indices: Mapping[int, object] | Sequence[int]) -> int:
    return sum(1 << i for i in indices)
