"""A free TCP port on the loopback for the tests that start process groups (torchrun, gloo), so
two test runs on one machine never collide on a fixed port."""

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
