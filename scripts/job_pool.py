"""Run a plan of commands with dependencies, several side by side, quietly, into log files.

``JobPool.run(steps)`` starts each step (``mini_plan.Step``: name, argv, needs, minutes) once the
steps it needs have succeeded, at most ``jobs`` at a time, each with OMP_NUM_THREADS=1 (on a
2-core machine two one-thread processes are several times faster than threads that wait for each
other, docs/demos.md) and its console output in LOG_DIR/NAME.log (first line: the command). The
console gets one line per finished step: runs done / total, elapsed, estimated remaining time.
A failed step is recorded and the others go on; the steps that need it are skipped and recorded
as such. The ledger (LEDGER: one JSON document, rewritten atomically after every change) says
for every step what happened. Ctrl-C or SIGTERM ends the running commands (each by its own id)
and stops the plan; rerunning continues it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atomic_io import WriteError, write_json
from engine.errors import JobInterrupted
from engine.preemption import JobSignals, Terminated

# step outcomes in the ledger
DONE, SKIPPED, FAILED, BLOCKED, PENDING = "done", "skipped", "failed", "blocked", "pending"
# a step that ends within this fraction of its estimated time found its work already done (data in
# place, a pretraining resumed at its end): it is left out of the ETA's speed estimate
QUICK_FRACTION = 0.1


@dataclass
class Outcome:
    status: str = PENDING
    detail: str = ""
    seconds: float = 0.0


def clock(seconds: float) -> str:
    """'1:02:03' or '2:03'."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class JobPool:
    """Runs steps side by side (see the module docstring).

    Args:
        jobs: commands at most at once.
        log_dir: where NAME.log goes.
        ledger: the ledger file (JSON), or None.
        check_done: (step) -> (done, why_not): whether a step's earlier result can be kept (the
            evaluation skip rule, orchestrate.finished); called when the step is due, after its
            needs have run, so it sees their outputs.
        prepare: (step) -> argv to run (orchestrate.rerun_argv adds --overwrite true where an
            earlier run left outputs).
        print_line: where the progress lines go.
    """

    def __init__(self, jobs: int, log_dir: Path, ledger: Path | None,
                 check_done: Callable = lambda step: (False, ""),
                 prepare: Callable = lambda step: step.argv,
                 print_line: Callable[[str], None] = lambda text: print(text, flush=True)):
        self.jobs = jobs
        self.log_dir = Path(log_dir)
        self.ledger = ledger
        self.check_done = check_done
        self.prepare = prepare
        self.say = print_line
        self.outcomes: dict[str, Outcome] = {}
        self.start = time.monotonic()

    # ------------------------------------------------------------------ bookkeeping
    def _write_ledger(self, steps) -> None:
        if self.ledger is None:
            return
        doc = {"steps": [{"name": s.name, "kind": s.kind, "status": self.outcomes[s.name].status,
                          "detail": self.outcomes[s.name].detail,
                          "seconds": round(self.outcomes[s.name].seconds, 1),
                          "log": str(self.log_dir / f"{s.name}.log"), "command": shlex.join(s.argv)}
                         for s in steps]}
        try:
            write_json(self.ledger, doc, "ledger")
        except WriteError as exc:
            print(f"warning: {exc}", file=sys.stderr)

    def _progress(self, steps, note: str) -> None:
        """One console line: done / total, elapsed, the estimated remaining time, the note. The
        estimate scales the elapsed time by the step estimates still to run over those that ran
        (skipped steps count as neither, nor does a step that ended within QUICK_FRACTION of its
        estimate, such as data generation finding its data in place or a pretraining resumed at
        its end: it says nothing about the machine's speed);
        before any step ran it is the estimates' sum / jobs."""
        finished = [s for s in steps if self.outcomes[s.name].status != PENDING]
        ran = sum(s.minutes for s in steps if self.outcomes[s.name].status in (DONE, FAILED)
                  and self.outcomes[s.name].seconds >= QUICK_FRACTION * 60 * s.minutes)
        left = sum(s.minutes for s in steps if self.outcomes[s.name].status == PENDING)
        elapsed = time.monotonic() - self.start
        eta = (elapsed * left / ran) if ran > 0 and elapsed > 0 else 60 * left / self.jobs
        self.say(f"[{clock(elapsed)}] {len(finished)}/{len(steps)} ({clock(eta)} left, "
                 f"estimated) {note}")

    # ------------------------------------------------------------------ running
    def run(self, steps: list) -> dict[str, Outcome]:
        """Run every step whose needs succeed; returns each step's outcome.

        Raises:
            JobInterrupted: Ctrl-C or SIGTERM (the running commands were ended first).
        """
        self.outcomes = {s.name: Outcome() for s in steps}
        by_name = {s.name: s for s in steps}
        for s in steps:
            unknown = [n for n in s.needs if n not in by_name]
            if unknown:
                raise ValueError(f"step {s.name} needs unknown steps {unknown}")
        running: dict[int, tuple[subprocess.Popen, object, float]] = {}
        signals = JobSignals()   # SIGTERM raises Terminated, and a swallowed one is sent again
        self.start = time.monotonic()
        try:
            while True:
                # start what can start (a kept step may make others ready), then wait for one
                while True:
                    self._block_failed(steps, by_name)
                    if not self._start_ready(steps, running) or len(running) >= self.jobs:
                        break
                if not running:
                    break        # nothing runs and nothing can start: every step has ended
                self._reap_one(steps, running)
        except KeyboardInterrupt as exc:
            by, status = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("Ctrl-C", 130)
            self._end_all(running, ctrl_c=by == "Ctrl-C")
            self._write_ledger(steps)
            raise JobInterrupted(f"stopped by {by}; the running commands were ended; finished "
                                 "runs are kept: rerun the same command to continue",
                                 status) from None
        finally:
            signals.restore()
        self._write_ledger(steps)
        return self.outcomes

    def _block_failed(self, steps, by_name) -> None:
        """Mark pending steps whose needs failed or were blocked (transitively, in plan order)."""
        changed = True
        while changed:
            changed = False
            for s in steps:
                if self.outcomes[s.name].status != PENDING:
                    continue
                bad = [n for n in s.needs if self.outcomes[n].status in (FAILED, BLOCKED)]
                if bad:
                    self.outcomes[s.name] = Outcome(BLOCKED, f"not run: {bad[0]} failed or was "
                                                             "not run")
                    self._progress(steps, f"not run {s.name} ({bad[0]} did not succeed)")
                    changed = True

    def _ready(self, step, running_names: set[str]) -> bool:
        return (self.outcomes[step.name].status == PENDING and step.name not in running_names
                and all(self.outcomes[n].status in (DONE, SKIPPED) for n in step.needs))

    def _start_ready(self, steps, running) -> bool:
        """Start ready steps while slots are free (skipping finished ones); True if any
        changed state."""
        changed = False
        for s in steps:
            if len(running) >= self.jobs:
                break
            names = {entry[1].name for entry in running.values()}
            if not self._ready(s, names):
                continue
            done, why_not = self.check_done(s)
            if done:
                self.outcomes[s.name] = Outcome(SKIPPED, "results.json of the same run kept")
                self._progress(steps, f"kept {s.name} (finished earlier, same inputs)")
                self._write_ledger(steps)
                changed = True
                continue
            argv = self.prepare(s)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = self.log_dir / f"{s.name}.log"
            with open(log, "w", encoding="utf-8") as handle:
                handle.write(shlex.join(argv) + "\n")
                if why_not:
                    handle.write(f"(rerunning: {why_not})\n")
                handle.flush()
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                try:
                    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
                except OSError as exc:
                    self.outcomes[s.name] = Outcome(FAILED, f"cannot start {argv[0]}: "
                                                            f"{exc.strerror}")
                    self._progress(steps, f"FAILED {s.name}: cannot start {argv[0]}")
                    changed = True
                    continue
            running[proc.pid] = (proc, s, time.monotonic())
            changed = True
        return changed

    def _reap_one(self, steps, running) -> None:
        """Wait for one running command to end and record it."""
        while True:
            for pid, (proc, step, began) in list(running.items()):
                status = proc.poll()
                if status is None:
                    continue
                del running[pid]
                seconds = time.monotonic() - began
                log = self.log_dir / f"{step.name}.log"
                if status == 0:
                    self.outcomes[step.name] = Outcome(DONE, "", seconds)
                    self._progress(steps, f"finished {step.name} ({clock(seconds)})")
                else:
                    self.outcomes[step.name] = Outcome(FAILED, f"exit status {status}; log {log}",
                                                       seconds)
                    self._progress(steps, f"FAILED {step.name} (exit status {status}; its log: "
                                          f"{log})")
                    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
                    print("\n".join(f"    {line}" for line in tail), file=sys.stderr, flush=True)
                self._write_ledger(steps)
                return
            time.sleep(0.2)

    def _end_all(self, running, ctrl_c: bool) -> None:
        """End the commands this pool started, each by its id, and wait for them. Ctrl-C reached
        them too (one process group): they get a minute to end on their own (pretraining
        finishes its step and saves) before SIGTERM; a SIGTERM of the runner is passed on."""
        if ctrl_c:
            for proc, _step, _began in running.values():
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
        for proc, _step, _began in running.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, step, _began in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.outcomes[step.name] = Outcome(FAILED, "ended by Ctrl-C / SIGTERM")
