"""Peak memory of a piece of work: the CUDA allocator's high-water mark, or on Linux CPUs the
resident set's (scripts/bench_train_step.py measures each step configuration with it).

    meter = PeakMemory(device)
    meter.start()
    ...                              # the work
    above = meter.peak()             # bytes above the level at start(), None where unknown
"""
from __future__ import annotations

import ctypes

import torch


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(f"/proc/self/status has no {field} line")


class PeakMemory:
    """Most memory allocated above the level at start(): CUDA allocator or resident set size.

    On CPUs with glibc, allocations of 64 KiB and more are switched to mmap (freed memory goes back
    to the OS at once) and free heap pages are handed back before each measurement, so the
    resident set follows the live tensors instead of the heap's history; mmap makes allocation
    slower, hence the memory is measured after the timed runs.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0
        self.libc = None
        if device.type != "cuda":
            try:
                self.libc = ctypes.CDLL("libc.so.6")
                self.libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
            except (OSError, AttributeError):
                self.libc = None  # not glibc: reused free heap is not seen (a lower bound)
        self.available = device.type == "cuda" or self._reset_rss()

    def _reset_rss(self) -> bool:
        """Reset the resident-set high-water mark (Linux >= 4.0); False where that is impossible."""
        if self.libc is not None:
            self.libc.malloc_trim(0)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            _proc_status_kb("VmHWM")
        except (OSError, KeyError):
            return False
        return True

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.available:
            self._reset_rss()
            self.base = _proc_status_kb("VmRSS") * 1024

    def peak(self) -> int | None:
        """Bytes above the start level at the high-water mark since start(); None if unknown."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.available:
            return _proc_status_kb("VmHWM") * 1024 - self.base
        return None
