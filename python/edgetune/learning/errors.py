"""Errors the learning subpackage raises on purpose; each message is one line naming the cause."""

from edgetune.errors import EdgetuneError


class LearningError(EdgetuneError):
    """Root of the learning subpackage's errors."""


class InvalidConfig(LearningError):
    """An AdapterSpec or TrainConfig field holds a value that cannot work."""


class BaseModelMismatch(LearningError):
    """The base model on disk is not the one the task pinned (its hash differs)."""

    def __init__(self, path: str, expected: bytes, actual: bytes) -> None:
        super().__init__(
            f"base model at {path} has hash 0x{actual.hex()}, task pinned 0x{expected.hex()}"
        )
        self.expected = expected
        self.actual = actual


class BaseModelUnavailable(LearningError):
    """A base model cannot be built or found offline (missing package or files)."""


class MalformedAdapter(LearningError):
    """Adapter bytes that do not parse into the tensors the adapter spec expects."""


class DataError(LearningError):
    """Training or validation data that cannot be used (bad JSONL line, empty set, ...)."""
