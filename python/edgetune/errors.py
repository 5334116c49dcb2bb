"""The one exception root. Every error edgetune raises on purpose derives from it, so a caller
(the CLI, an agent loop) can catch `EdgetuneError` and print its one-line message."""


class EdgetuneError(Exception):
    """Root of all edgetune errors; str(error) is a one-line message naming the cause."""
