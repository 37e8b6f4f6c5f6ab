"""Starting process groups in tests: a free TCP port on the loopback (two test runs on one machine
never collide on a fixed port) and a two-process torchrun of an entry point."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_argv(script: str, *args: str, nproc: int = 2) -> list[str]:
    """The command that starts ``script`` (relative to the repository) in ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_port", str(free_port()), script, *args]


def torchrun(script: str, *args: str, nproc: int = 2, timeout: int = 300
             ) -> subprocess.CompletedProcess:
    """Run ``script`` under torchrun from the repository root, one thread per process."""
    return subprocess.run(torchrun_argv(script, *args, nproc=nproc), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
