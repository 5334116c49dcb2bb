"""Ports for servers the tests start: always on 127.0.0.1, never a fixed number."""

import socket


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
