"""Near-copy detection: an update that is a perturbed copy of an earlier one is valid but unpaid.

Shapley values are not robust to replicated data (Han et al. 2020): k copies of one helpful
update split and, together, out-earn it. The contract refuses byte-identical reveals; this
catches the cheap evasion, a copy plus a little noise. Update j is a copy when its change dU_j
(= U_j - G over the trained keys) lies within relative distance `threshold` of the change of an
earlier-revealed valid update i that is not itself a copy:

    ||dU_j - dU_i|| <= threshold * ||dU_i||

With threshold < 1 this treats zero changes sanely without a special case: a zero update after
another zero update is a copy (0 <= 0), a zero update is never a copy of a nonzero one
(||dU_i|| > threshold * ||dU_i||), and nothing nonzero is a copy of a zero update.

Norms are `math.fsum` of the squared entries (each square correctly rounded, the sum exactly
rounded), so every validator computes the same bits and agrees on which side of the threshold
an update falls, whatever its BLAS.
"""

import math
from collections.abc import Mapping

import numpy as np

from edgetune.contribution.errors import CopyThresholdError

# Measured in bench/bench_copies.py on real LoRA updates of the tiny model (docs/contribution.md):
# honest non-IID updates were never closer than 0.36 (rounds 1-3, 6-10 edges, IID and non-IID);
# the closest honest pair was two edges holding the same 17-18 examples with different training
# seeds, at 0.14 (0.26+ from 24 examples up). Copies with relative noise 1e-3 / 1e-2 sit at
# exactly that distance. 0.02 is 7x below the closest honest pair and 2x above a 1e-2 copy: an
# honest edge wrongly unpaid is the worse error, since a copier can add more noise either way.
COPY_THRESHOLD = 0.02


def relative_distance(delta: np.ndarray, reference: np.ndarray) -> float:
    """||delta - reference|| / ||reference||; inf when the reference is zero and delta is not."""
    gap = _norm(np.asarray(delta, dtype=np.float64) - np.asarray(reference, dtype=np.float64))
    scale = _norm(reference)
    if scale == 0.0:
        return 0.0 if gap == 0.0 else math.inf
    return gap / scale


def near_copies(
    deltas: Mapping[int, np.ndarray], threshold: float = COPY_THRESHOLD
) -> dict[int, int]:
    """Which updates copy an earlier one: {copy's index: original's index}.

    `deltas` maps reveal index -> flattened change of each valid update. Indices are scanned in
    increasing order; a copy is matched only against earlier originals (never against another
    copy), the earliest one if several match, so the result does not depend on dict order.
    """
    check_copy_threshold(threshold)
    originals: list[tuple[int, np.ndarray, float]] = []  # (index, delta, ||delta||)
    copies: dict[int, int] = {}
    for index in sorted(deltas):
        delta = np.asarray(deltas[index], dtype=np.float64)
        match = next(
            (
                original
                for original, reference, scale in originals
                if reference.shape == delta.shape and _norm(delta - reference) <= threshold * scale
            ),
            None,
        )
        if match is None:
            originals.append((index, delta, _norm(delta)))
        else:
            copies[index] = match
    return copies


def check_copy_threshold(threshold: object) -> None:
    """A threshold must be a number in [0, 1): at 1 or above a zero update copies everything."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0.0 <= threshold < 1.0
    ):
        raise CopyThresholdError(f"copy_threshold must be a number in [0, 1), got {threshold!r}")


def _norm(vector: np.ndarray) -> float:
    flat = np.asarray(vector, dtype=np.float64).ravel()
    return math.sqrt(math.fsum(np.square(flat).tolist()))
