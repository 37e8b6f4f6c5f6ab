"""The mutation gate's list stays usable: every snippet is found exactly once in the current tree.

The gate itself (scripts/mutation_check.py) runs by hand; this catches drift in CI, when a change
moves or rewrites code a mutation plants its bug in.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "mutation_check.py"
AREAS = {"losses", "sampling", "augmentation", "aggregation", "metrics", "schedules",
         "checkpoints", "run folders"}


@pytest.fixture(scope="module")
def gate():
    spec = importlib.util.spec_from_file_location("mutation_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_snippet_is_found_exactly_once(gate):
    assert gate.list_problems() == []


def test_the_list_covers_every_area(gate):
    assert len(gate.MUTATIONS) >= 30
    assert {m.area for m in gate.MUTATIONS} == AREAS
    # the two mix-ups the known-answer tests were written for are in the gate
    names = {m.name for m in gate.MUTATIONS}
    assert {"eval-clips-mixed-across-videos", "retrieval-clips-mixed-across-videos",
            "augment-hue-saturation-swapped", "checkpoint-rng-not-saved"} <= names


def test_a_stale_snippet_is_reported_by_name(gate, tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "x.py").write_text("a = 1\na = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    twice = gate.Mutation("twice", "metrics", "engine/x.py", "a = 1", "a = 2",
                          ("tests/test_x.py",), "")
    absent = gate.Mutation("absent", "metrics", "engine/x.py", "b = 1", "b = 2",
                           ("tests/test_missing.py",), "")
    problems = gate.list_problems((twice, absent), tmp_path)
    assert any(p.startswith("twice: its snippet occurs 2 times") for p in problems)
    assert any(p.startswith("absent: its snippet occurs 0 times") for p in problems)
    assert any("test file tests/test_missing.py does not exist" in p for p in problems)
    with pytest.raises(gate.StaleMutation, match="twice"):
        gate.apply(tmp_path, twice)


def test_list_option_runs_nothing():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--list", "--only",
                           "eval-clips-mixed-across-videos"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("eval-clips-mixed-across-videos") and "KA" not in proc.stdout
    assert "tests/test_known_answers.py" in proc.stdout
    unknown = subprocess.run([sys.executable, str(SCRIPT), "--list", "--only", "no-such"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown mutation(s) no-such" in unknown.stderr
