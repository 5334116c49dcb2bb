"""Shapley scores in the chain's format: int32 fixed point with 1e6 units per 1.0.

Validators reveal their scores on chain, where they are packed as int32 and compared through a
stake-weighted median, so every validator must turn the same float into the same integer.
The rounding is done on the float's shortest decimal form (its `repr`, which every Python
produces identically): 2.5e-06 becomes 3, as a reader expects, not 2 as the binary value just
below 2.5e-06 would give. Halves round away from zero; scores beyond int32 are clamped.
"""

import math
from decimal import ROUND_HALF_UP, Context, Decimal

from edgetune.contribution.errors import FixedPointError

DEFAULT_SCALE = 1_000_000
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Enough digits for a 17-digit float times any int64 scale, so the product is exact.
_EXACT = Context(prec=60)


def to_fixed(phi: float, scale: int = DEFAULT_SCALE) -> int:
    """`phi * scale` rounded half away from zero and clamped to the int32 range."""
    _check_scale(scale)
    if not math.isfinite(phi):
        raise FixedPointError(f"score must be a finite number, got {phi!r}")
    scaled = _EXACT.multiply(Decimal(repr(float(phi))), Decimal(scale))
    if scaled >= INT32_MAX:
        return INT32_MAX
    if scaled <= INT32_MIN:
        return INT32_MIN
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def from_fixed(value: int, scale: int = DEFAULT_SCALE) -> float:
    """The float a fixed-point score stands for (nearest float to `value / scale`)."""
    _check_scale(scale)
    return value / scale


def _check_scale(scale: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise FixedPointError(f"scale must be a positive integer, got {scale!r}")
