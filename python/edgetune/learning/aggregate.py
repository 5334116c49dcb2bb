"""Federated averaging, pure and bit-reproducible (no I/O, no randomness).

G(r) = G(r-1) + sum_j (n_j / sum n) * (U_j - G(r-1)) over the trained keys, computed in float64
key by key (sorted) and, within a key, update by update in the order given (the caller passes
reveal order), then cast to float32 once. Elementwise float64 arithmetic in a fixed order is
IEEE-exact, so any two machines produce the same bytes, hence the same sha256.
"""

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from edgetune.learning.errors import LearningError, MalformedAdapter

Tensors = dict[str, torch.Tensor]
Update = tuple[Mapping[str, torch.Tensor], int]


def aggregate(previous_global: Mapping[str, torch.Tensor], updates: Sequence[Update]) -> Tensors:
    """New global adapter from the previous one and `(tensors, n_samples)` updates in reveal order.

    Keys an update does not carry (the frozen A matrices in "ffa" mode) are copied unchanged.
    With no updates the previous global is returned (as a copy): the round changes nothing.
    """
    keys = _checked_update_keys(previous_global, updates)
    total = sum(n for _, n in updates)
    result = {k: v.detach().to(torch.float32).clone() for k, v in previous_global.items()}
    for key in keys:
        base = previous_global[key].detach().cpu().numpy().astype(np.float64)
        acc = base.copy()
        for tensors, n in updates:
            change = tensors[key].detach().cpu().numpy().astype(np.float64) - base
            acc += (n / total) * change
        result[key] = torch.from_numpy(acc.astype(np.float32))
    return dict(sorted(result.items()))


def aggregate_in_reveal_order(
    previous_global: Mapping[str, torch.Tensor], updates: Mapping[int, Update]
) -> Tensors:
    """`aggregate` with updates keyed by reveal index, so arrival order cannot change the result."""
    return aggregate(previous_global, [updates[i] for i in sorted(updates)])


def coalition_adapter(
    previous_global: Mapping[str, torch.Tensor], updates: Sequence[Update], members: Iterable[int]
) -> Tensors:
    """Global adapter if only `members` (indices into `updates`) were averaged: G ⊕ agg(S).

    A weighted sum over the subset; the empty coalition gives the previous global.
    """
    chosen = sorted(set(members))
    if chosen and not 0 <= chosen[0] <= chosen[-1] < len(updates):
        raise LearningError(f"coalition members {chosen} out of range for {len(updates)} updates")
    return aggregate(previous_global, [updates[i] for i in chosen])


def fedit_product_error(updates: Sequence[Update]) -> float:
    """Relative error of FedIT's separate A/B averaging vs the exact average of products B·A.

    Returns ||avg(B)·avg(A) - avg(B·A)||_F / ||avg(B·A)||_F summed over all LoRA modules
    (0 when every update shares A, as in "ffa" mode).
    """
    total = sum(n for _, n in updates)
    diff_sq = exact_sq = 0.0
    for key_b in sorted(k for k in updates[0][0] if ".lora_B." in k):
        key_a = key_b.replace(".lora_B.", ".lora_A.")
        weights = [n / total for _, n in updates]
        b = [t[key_b].double() for t, _ in updates]
        a = [t[key_a].double() for t, _ in updates]
        exact = sum(w * bj @ aj for w, bj, aj in zip(weights, b, a, strict=True))
        approx = sum(w * bj for w, bj in zip(weights, b, strict=True)) @ sum(
            w * aj for w, aj in zip(weights, a, strict=True)
        )
        diff_sq += float(((approx - exact) ** 2).sum())
        exact_sq += float((exact**2).sum())
    return (diff_sq**0.5) / exact_sq**0.5 if exact_sq > 0 else 0.0


def _checked_update_keys(
    previous_global: Mapping[str, torch.Tensor], updates: Sequence[Update]
) -> list[str]:
    """The sorted trained keys; every update must carry the same ones, shaped like the global."""
    if not updates:
        return []
    keys = sorted(updates[0][0])
    for index, (tensors, n) in enumerate(updates):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LearningError(f"update {index} has sample count {n!r}, expected a positive int")
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
