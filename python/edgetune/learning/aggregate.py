"""Federated averaging, pure and bit-reproducible (no I/O, no randomness).

G(r) = G(r-1) + sum_j (1/k) * (U_j - G(r-1)) over the trained keys of the k included updates:
uniform weights, because self-reported sample counts are a lever (an edge claiming 10x its
samples raised its own Shapley share; measured in bench/bench_weighting.py, docs/contribution.md).

Computed in float64 key by key (sorted) and, within a key, update by update in the order given
(the caller passes reveal order), then cast to float32 once. Elementwise float64 arithmetic in a
fixed order is IEEE-exact, so any two machines produce the same bytes, hence the same sha256.
Before the cast every -0.0 becomes +0.0 (x + 0.0), so adding an exactly-zero change never alters
a byte: a zero update is an exact null player of the Shapley utility below.

`coalition_adapter` is the validator's Shapley utility model: a coalition S of the valid set V
moves G by sum_{j in S} (w_j / sum_{k in V} w_k) * dU_j, normalised over V, not over S, so a zero
update changes no coalition and the grand coalition is exactly `aggregate` of V.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from edgetune.learning.errors import LearningError, MalformedAdapter

Tensors = dict[str, torch.Tensor]
Update = Mapping[str, torch.Tensor]


def aggregate(previous_global: Mapping[str, torch.Tensor], updates: Sequence[Update]) -> Tensors:
    """New global adapter: the previous one plus the mean change of `updates` (reveal order).

    Keys an update does not carry (the frozen A matrices in "ffa" mode) are copied unchanged.
    With no updates the previous global is returned (as a copy): the round changes nothing.
    """
    return coalition_adapter(previous_global, updates, range(len(updates)))


def aggregate_in_reveal_order(
    previous_global: Mapping[str, torch.Tensor], updates: Mapping[int, Update]
) -> Tensors:
    """`aggregate` with updates keyed by reveal index, so arrival order cannot change the result."""
    return aggregate(previous_global, [updates[i] for i in sorted(updates)])


def coalition_adapter(
    previous_global: Mapping[str, torch.Tensor],
    updates: Sequence[Update],
    members: Iterable[int],
    weights: Sequence[float] | None = None,
) -> Tensors:
    """G + sum_{j in members} (w_j / sum_k w_k) * (U_j - G), the sum over ALL of `updates`.

    `updates` is the whole valid set V (reveal order), `members` the coalition (indices into
    it). `weights` default to uniform (what the protocol uses); other weights exist so the
    weighting can be measured against alternatives with this same code. The empty coalition
    gives the previous global; all members give exactly `aggregate(previous_global, updates)`.
    """
    chosen = sorted(set(members))
    if chosen and not 0 <= chosen[0] <= chosen[-1] < len(updates):
        raise LearningError(f"coalition members {chosen} out of range for {len(updates)} updates")
    shares = _shares(len(updates), weights)
    keys = _checked_update_keys(previous_global, updates)
    result = {k: v.detach().to(torch.float32).clone() for k, v in previous_global.items()}
    for key in keys:
        base = _float64(previous_global[key])
        acc = base.copy()
        for j in chosen:
            acc += shares[j] * (_float64(updates[j][key]) - base)
        acc += 0.0  # -0.0 -> +0.0, so an exactly-zero change leaves every byte as it was
        result[key] = torch.from_numpy(acc.astype(np.float32))
    return dict(sorted(result.items()))


def momentum_aggregate(
    previous_global: Mapping[str, torch.Tensor],
    before_previous: Mapping[str, torch.Tensor] | None,
    updates: Sequence[Update],
    beta: float,
) -> Tensors:
    """FedAvgM with server lr 1: G(r) = G(r-1) + beta * (G(r-1) - G(r-2)) + mean_j (U_j - G(r-1)).

    With lr 1 the server's momentum buffer after round r-1 is exactly G(r-1) - G(r-2), so the
    only server state is the last two globals, both on chain: any verifier recomputes the same
    bytes (float64, sorted keys, reveal order, as `aggregate`). `before_previous` None (round 1,
    no earlier global) is plain `aggregate`.
    """
    averaged = aggregate(previous_global, updates)
    if before_previous is None or beta == 0 or not updates:
        return averaged
    result = dict(averaged)
    for key in _checked_update_keys(previous_global, updates):
        velocity = _float64(previous_global[key]) - _float64(before_previous[key])
        moved = _float64(averaged[key]) + beta * velocity + 0.0
        result[key] = torch.from_numpy(moved.astype(np.float32))
    return result


@dataclass(frozen=True)
class AdamServerState:
    """FedAdam's moments per trained key (float64), after some round."""

    first: dict[str, np.ndarray]
    second: dict[str, np.ndarray]


def adam_aggregate(
    previous_global: Mapping[str, torch.Tensor],
    updates: Sequence[Update],
    state: AdamServerState | None,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.99),
    tau: float = 1e-3,
) -> tuple[Tensors, AdamServerState]:
    """FedAdam (Reddi et al. 2021, no bias correction): the round's pseudo-gradient
    d = aggregate - G(r-1) feeds Adam moments m, v; G(r) = G(r-1) + lr * m / (sqrt(v) + tau).

    The moments are a function of every past round's included updates, which the chain (the
    included sets) and the content store (their bytes) hold, so a verifier replaying the rounds
    gets the same bytes: float64, sorted keys, IEEE-exact elementwise operations."""
    averaged = aggregate(previous_global, updates)
    keys = _checked_update_keys(previous_global, updates)
    first, second = (dict(state.first), dict(state.second)) if state else ({}, {})
    result = dict(averaged)
    for key in keys:
        base = _float64(previous_global[key])
        delta = _float64(averaged[key]) - base
        first[key] = betas[0] * first.get(key, 0.0) + (1 - betas[0]) * delta
        second[key] = betas[1] * second.get(key, 0.0) + (1 - betas[1]) * delta * delta
        moved = base + lr * first[key] / (np.sqrt(second[key]) + tau) + 0.0
        result[key] = torch.from_numpy(moved.astype(np.float32))
    return result, AdamServerState(first, second)


def update_delta(previous_global: Mapping[str, torch.Tensor], update: Update) -> np.ndarray:
    """dU = U - G over the update's keys, flattened in sorted key order, in float64."""
    keys = _checked_update_keys(previous_global, [update])
    if not keys:
        return np.zeros(0)
    return np.concatenate(
        [(_float64(update[k]) - _float64(previous_global[k])).ravel() for k in keys]
    )


def fedit_product_error(updates: Sequence[Update]) -> float:
    """Relative error of FedIT's separate A/B averaging vs the exact average of products B·A.

    Returns ||avg(B)·avg(A) - avg(B·A)||_F / ||avg(B·A)||_F summed over all LoRA modules
    (0 when every update shares A, as in "ffa" mode). Averages are uniform, as in `aggregate`.
    """
    weight = 1.0 / len(updates)
    diff_sq = exact_sq = 0.0
    for key_b in sorted(k for k in updates[0] if ".lora_B." in k):
        key_a = key_b.replace(".lora_B.", ".lora_A.")
        b = [t[key_b].double() for t in updates]
        a = [t[key_a].double() for t in updates]
        exact = sum(weight * bj @ aj for bj, aj in zip(b, a, strict=True))
        approx = sum(weight * bj for bj in b) @ sum(weight * aj for aj in a)
        diff_sq += float(((approx - exact) ** 2).sum())
        exact_sq += float((exact**2).sum())
    return (diff_sq**0.5) / exact_sq**0.5 if exact_sq > 0 else 0.0


def _shares(count: int, weights: Sequence[float] | None) -> list[float]:
    """w_j / sum w, each a correctly rounded float64 (fsum), so every machine gets the same."""
    if weights is None:
        return [1.0 / count for _ in range(count)]
    if len(weights) != count:
        raise LearningError(f"{len(weights)} weights given for {count} updates")
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not (math.isfinite(weight) and weight > 0):
            raise LearningError(f"update {index} has weight {weight!r}, expected a positive number")
    total = math.fsum(float(w) for w in weights)
    return [float(w) / total for w in weights]


def _float64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


def _checked_update_keys(
    previous_global: Mapping[str, torch.Tensor], updates: Sequence[Update]
) -> list[str]:
    """The sorted trained keys; every update must carry the same ones, shaped like the global."""
    if not updates:
        return []
    keys = sorted(updates[0])
    for index, tensors in enumerate(updates):
        if sorted(tensors) != keys:
            raise MalformedAdapter(f"update {index} carries different keys than update 0")
        for key in keys:
            if key not in previous_global:
                raise MalformedAdapter(
                    f"update {index} has key {key} absent from the global adapter"
                )
            if tuple(tensors[key].shape) != tuple(previous_global[key].shape):
                raise MalformedAdapter(
                    f"update {index} tensor {key} has shape {tuple(tensors[key].shape)}"
                )
    return keys
