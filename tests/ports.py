"""Ports for servers the tests start: always on 127.0.0.1, never a fixed number."""

from edgetune.chain.nodes import free_port

__all__ = ["free_port"]
