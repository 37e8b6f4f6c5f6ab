"""scripts/bench_extract.py: a tiny run prints videos/s of both feature passes and checks their
features are equal."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench_extract.py"


def test_bench_extract_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_extract", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_extract"] = bench
    spec.loader.exec_module(bench)
    best = bench.main(["--videos", "2", "--frames", "50", "--width", "8", "--resolution", "32",
                       "--num-clips", "2", "--batch-size", "2", "--workers", "0,1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == {k: round(v, 4) for k, v in best.items()}
    assert set(best) == {f"{name}_workers{w}" for name in ("retrieval", "extract", "extract_pass")
                         for w in (0, 1)}
    assert all(v > 0 for v in best.values())
    assert "features equal (atol 1e-5): yes" in lines
