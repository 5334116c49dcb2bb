"""Contribution scoring: Shapley values of a round's updates, and their on-chain fixed point.

The caller supplies `utility(coalition) -> float` (in the agent: evaluate G(r-1) plus the
coalition's share of the valid set's average change, `learning.coalition_adapter`); this package
only decides which coalitions to evaluate and how to combine them. See `shapley` for the
estimators and why they look so, and `copies` for near-copy detection.
"""

from edgetune.contribution.config import ShapleyConfig
from edgetune.contribution.copies import (
    COPY_THRESHOLD,
    check_copy_threshold,
    near_copies,
    relative_distance,
)
from edgetune.contribution.errors import (
    ContributionError,
    CopyThresholdError,
    FixedPointError,
    PlayersError,
    ShapleyConfigError,
    UtilityValueError,
)
from edgetune.contribution.fixed_point import DEFAULT_SCALE, from_fixed, to_fixed
from edgetune.contribution.shapley import (
    ShapleyResult,
    Utility,
    exact_shapley,
    monte_carlo_shapley,
    shapley_values,
)

__all__ = [
    "COPY_THRESHOLD",
    "DEFAULT_SCALE",
    "ContributionError",
    "CopyThresholdError",
    "FixedPointError",
    "PlayersError",
    "ShapleyConfig",
    "ShapleyConfigError",
    "ShapleyResult",
    "Utility",
    "UtilityValueError",
    "check_copy_threshold",
    "exact_shapley",
    "from_fixed",
    "monte_carlo_shapley",
    "near_copies",
    "relative_distance",
    "shapley_values",
    "to_fixed",
]
