"""Errors of the command line itself: an option value no command can use."""

from edgetune.errors import EdgetuneError


class InvalidOption(EdgetuneError):
    """An option's value is out of range or malformed (caught before anything is sent)."""

    def __init__(self, option: str, value: object, why: str) -> None:
        super().__init__(f"{option} {value}: {why}")
        self.option = option


class AmbiguousNode(EdgetuneError):
    """Several local nodes run and nothing says which one a command means."""
