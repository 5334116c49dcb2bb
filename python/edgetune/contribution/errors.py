"""Errors raised by the contribution subpackage, all under `EdgetuneError`."""

from edgetune.errors import EdgetuneError


class ContributionError(EdgetuneError):
    """Root of the errors raised while scoring contributions."""


class ShapleyConfigError(ContributionError, ValueError):
    """A `ShapleyConfig` field holds a value the estimators cannot work with."""


class PlayersError(ContributionError, ValueError):
    """The players to score are not distinct integers, or too many for exact enumeration."""


class UtilityValueError(ContributionError, ValueError):
    """The caller's utility returned something that is not a finite number."""


class FixedPointError(ContributionError, ValueError):
    """A score cannot be written in the chain's fixed-point format."""


class CopyThresholdError(ContributionError, ValueError):
    """A near-copy threshold outside [0, 1)."""
