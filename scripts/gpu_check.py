"""Bookkeeping of scripts/gpu_check.sh: the step table, the time budget, the logs and the summary.

gpu_check.sh is the list of commands; this module runs each of them as one step:

    python scripts/gpu_check.py init --out OUT --work WORK [--smoke]
    python scripts/gpu_check.py step --out OUT NAME -- COMMAND...   # one step of STEPS
    python scripts/gpu_check.py summary --out OUT                  # table, numbers; 1 on failure
    python scripts/gpu_check.py env                                # versions, GPU, /dev/shm (JSON)
    python scripts/gpu_check.py probe-collectives --device cuda    # under torchrun, 1 process

A step runs with its own timeout (STEPS; never past the budget), its output appended to
OUT/gpu_check.log; it is skipped when the time left in the budget is below its estimate. A failed
or timed-out step is recorded and the script goes on. OUT holds three files: gpu_check.log (every
step's output), steps.jsonl (one record per step, with the numbers it produced) and summary.txt.
Runs, checkpoints and data go to WORK (init empties it; removed by ``finish`` unless KEEP_WORK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

LOG = "gpu_check.log"
RECORDS = "steps.jsonl"
SUMMARY = "summary.txt"
WORK_MARK = ".gpu_check_work"     # init only empties a WORK folder that carries this mark


@dataclass(frozen=True)
class Step:
    """One line of the check: how long it may run and how long it is expected to take (s)."""

    name: str
    what: str
    timeout_s: int           # GPU box: the step is killed after this
    estimate_s: int          # GPU box: skipped when less than this is left of the budget
    metrics: str = ""        # where its numbers are: "json" (last JSON line), "run:DIR",
                             # "results:DIR" (set by the command line; see _metrics)
    smoke_timeout_s: int = 600   # SMOKE=1 (tiny sizes, CPU): generous, nothing is skipped


# In priority order. The estimates are for one H100-class GPU with 16 cores; the summary prints
# what each step really took, so a slower machine shows which estimates to raise.
STEPS = (
    Step("env", "torch, CUDA, cuDNN, NCCL versions; GPU; /dev/shm", 30, 5),
    Step("data", "synthetic videos at 320x240 (python -m dataloaders.synthetic)", 120, 30),
    Step("pytest_gpu", "pytest -m gpu (every CUDA path of the code)", 180, 60),
    Step("pretrain_release", "torchrun 1 process: R3D-18, 112 px, batch 40, release defaults",
         180, 80),
    Step("bench", "bench_train_step.py: release-style vs best, batch 40; end to end with 15 "
         "workers, augmentation on CPU and on the device", 240, 120),
    Step("pretrain_fastest", "the fastest options end to end (fused forward, channels_last_3d, "
         "bf16, augmentation on the device)", 150, 60),
    Step("resume_precision", "--resume auto of the bf16 run with --amp fp16 (scaler {} -> on)",
         120, 40),
    Step("linear", "a short linear probe on the checkpoint", 120, 40),
    Step("retrieval", "nearest-neighbour retrieval on the checkpoint", 120, 40),
    Step("compile_ckpt", "extra: bench with torch.compile + grad checkpointing (CPU: "
         "checkpointing only)", 240, 120),
    Step("ddp_gloo", "extra: DDP + SyncBN + gathered loss, 2 processes on one GPU over gloo",
         150, 60),
    Step("nccl_probe", "extra: one-process NCCL probe of the collectives the code uses", 60, 15),
)
STEP_BY_NAME = {s.name: s for s in STEPS}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

def _read_records(out: Path) -> tuple[dict, list[dict]]:
    """(the init record, the step records) of OUT/steps.jsonl."""
    path = out / RECORDS
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run `python scripts/gpu_check.py init --out "
                         f"{out}` first (gpu_check.sh does)")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[0], lines[1:]


def _append(out: Path, record: dict) -> None:
    with open(out / RECORDS, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _log(out: Path, text: str) -> None:
    with open(out / LOG, "a") as fh:
        fh.write(text)


def init(out: Path, work: Path, budget_s: float, smoke: bool) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name in (LOG, RECORDS, SUMMARY):
        (out / name).unlink(missing_ok=True)
    if work.exists():
        if not (work / WORK_MARK).is_file():
            print(f"error: WORK={work} exists and is not a gpu_check work folder; remove it or set "
                  "WORK to a new path", file=sys.stderr)
            return 2
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_MARK).write_text("made by scripts/gpu_check.py init; emptied by the next run\n")
    _append(out, {"started": time.time(), "budget_s": budget_s, "smoke": smoke,
                  "work": str(work)})
    _log(out, f"gpu_check started {time.strftime('%Y-%m-%d %H:%M:%S')}; budget {budget_s:.0f} s"
              f"{' (SMOKE: tiny sizes)' if smoke else ''}; work folder {work}\n")
    return 0


# --------------------------------------------------------------------------------------------
# One step
# --------------------------------------------------------------------------------------------

def _run_with_timeout(command: list[str], timeout_s: float, out: Path) -> tuple[int | None, list]:
    """Run ``command`` in its own process group, its output to the log; kill the whole group
    (torchrun's children, DataLoader workers) after ``timeout_s``. Returns (exit status or None
    on timeout, the last 400 output lines)."""
    tail: deque = deque(maxlen=400)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=REPO_ROOT, start_new_session=True, text=True, errors="replace")

    def pump() -> None:
        with open(out / LOG, "a") as fh:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        code = None
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(timeout=10)
    return code, list(tail)


def _last_json(lines: list[str]) -> dict:
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def _metrics(kind: str, lines: list[str]) -> dict:
    """The numbers a step produced: "json" = its last JSON line; "run:DIR" = the last epoch of a
    pretraining run folder (and whether it resumed across a precision change); "results:DIR" =
    an evaluation's results.json."""
    if kind == "json":
        return _last_json(lines)
    if kind.startswith("run:"):
        folder = Path(kind[4:])
        found: dict = {}
        jsonl = folder / "log.jsonl"
        if jsonl.is_file():
            epochs = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
            epochs = [e for e in epochs if "samples_per_s" in e]
            if epochs:
                last = epochs[-1]
                found = {k: last[k] for k in ("samples_per_s", "data_wait_fraction", "loss_total",
                                             "step") if k in last}
        log = folder / "log.txt"
        if log.is_file():
            text = log.read_text(errors="replace")
            found["resumed_across_precision"] = "across a precision change" in text
        return found
    if kind.startswith("results:"):
        path = Path(kind[8:]) / "results.json"
        if not path.is_file():
            return {}
        results = json.loads(path.read_text())
        return {k: results[k] for k in ("top1", "top5", "recall@1", "recall@5", "num_videos",
                                        "num_queries") if k in results}
    return {}


def step(out: Path, name: str, command: list[str], metrics: str) -> int:
    """Run one step of STEPS unless the budget is spent; always returns 0 (the script goes on)."""
    if name not in STEP_BY_NAME:
        raise SystemExit(f"error: step {name!r} is not in scripts/gpu_check.py STEPS "
                         f"({', '.join(STEP_BY_NAME)})")
    spec = STEP_BY_NAME[name]
    head, _ = _read_records(out)
    left = head["budget_s"] - (time.time() - head["started"])
    timeout = spec.smoke_timeout_s if head["smoke"] else spec.timeout_s
    record = {"name": name, "what": spec.what, "command": command}
    if not head["smoke"] and left < spec.estimate_s:
        record.update(status="skipped", seconds=0.0,
                      why=f"{left:.0f} s left of the budget, the step needs about "
                          f"{spec.estimate_s} s")
        print(f"-- {name}: skipped ({record['why']})", flush=True)
        _log(out, f"\n=== {name}: skipped ({record['why']})\n")
        _append(out, record)
        return 0
    if not head["smoke"]:
        timeout = min(timeout, max(left, spec.estimate_s))
    print(f"-- {name}: {spec.what} (timeout {timeout:.0f} s)", flush=True)
    _log(out, f"\n=== {name}: {' '.join(command)}\n")
    started = time.time()
    try:
        code, tail = _run_with_timeout(command, timeout, out)
    except OSError as exc:           # the command itself is missing or not executable
        code, tail = 127, [f"could not start {command[0]}: {exc}"]
        _log(out, tail[0] + "\n")
    seconds = round(time.time() - started, 1)
    status = "ok" if code == 0 else "timeout" if code is None else f"failed (exit {code})"
    record.update(status=status, seconds=seconds, metrics=_metrics(metrics, tail))
    if code != 0:
        record["last_lines"] = tail[-8:]
    _log(out, f"=== {name}: {status} in {seconds} s\n")
    print(f"-- {name}: {status} in {seconds} s", flush=True)
    _append(out, record)
    return 0


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

def _fmt(value, spec: str = "", unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:{spec}}{unit}"


def performance_lines(by_name: dict) -> list[str]:
    """The figures docs/performance.md asks for, from the steps' numbers ('n/a' when missing)."""
    m = {name: rec.get("metrics") or {} for name, rec in by_name.items()}
    env, bench = m.get("env", {}), m.get("bench", {})
    lines = [f"machine: {env.get('gpu', 'no GPU')} ({env.get('gpu_memory_gb', 'n/a')} GB), "
             f"driver {env.get('driver', 'n/a')}, {env.get('cpus', 'n/a')} CPUs, /dev/shm "
             f"{env.get('shm_gb', 'n/a')} GB; torch {env.get('torch', 'n/a')}, CUDA "
             f"{env.get('cuda', 'n/a')}, cuDNN {env.get('cudnn', 'n/a')}, NCCL "
             f"{env.get('nccl', 'n/a')}"]
    for name in ("release_style", "best"):
        row = bench.get(name) or {}
        lines.append(f"step {name}: {_fmt(row.get('samples_per_s'), '.1f')} samples/s, peak "
                     f"{_fmt(row.get('peak_mem_mb'), '.0f', ' MB')}")
    lines.append(f"best / release_style: {_fmt(bench.get('speedup'), '.2f', 'x')} samples/s, "
                 f"memory ratio {_fmt(bench.get('mem_ratio'), '.2f')}")
    for run in bench.get("e2e_runs") or []:
        if "error" in run:
            lines.append(f"end to end, augment_on={run.get('augment_on')}: failed "
                         f"({run['error']})")
            continue
        lines.append(f"end to end, augment_on={run['augment_on']}, {run['workers']} workers: "
                     f"{run['samples_per_s']:.1f} samples/s, data wait "
                     f"{run['data_wait_fraction']:.0%}")
    for name in ("pretrain_release", "pretrain_fastest"):
        run = m.get(name, {})
        lines.append(f"training {name}: {_fmt(run.get('samples_per_s'), '.1f')} samples/s, "
                     f"data wait {_fmt(run.get('data_wait_fraction'), '.0%')}")
    resumed = m.get("resume_precision", {}).get("resumed_across_precision")
    lines.append("resume across a precision change: "
                 + ("logged and continued" if resumed else "n/a" if resumed is None
                    else "no precision change seen (CPU runs have no grad scaler)"))
    lines.append(f"linear probe top1 {_fmt(m.get('linear', {}).get('top1'), '.2f', '%')}; "
                 f"retrieval R@1 {_fmt(m.get('retrieval', {}).get('recall@1'), '.2f', '%')} "
                 "(a few steps: checks the pipeline, not accuracy)")
    compiled = m.get("compile_ckpt", {}).get("best") or {}
    lines.append(f"best + compile + grad checkpointing: "
                 f"{_fmt(compiled.get('samples_per_s'), '.1f')} samples/s, peak "
                 f"{_fmt(compiled.get('peak_mem_mb'), '.0f', ' MB')}")
    probe = m.get("nccl_probe", {})
    if probe:
        bad = {k: v for k, v in probe.get("ops", {}).items() if v != "ok"}
        lines.append(f"collectives over {probe.get('backend')}: "
                     + ("all ok" if not bad else f"failed {bad}"))
    return lines


def summary(out: Path) -> int:
    head, records = _read_records(out)
    by_name = {r["name"]: r for r in records}
    total = time.time() - head["started"]
    budget = ("no budget in SMOKE mode" if head["smoke"]
              else f"of a {head['budget_s']:.0f} s budget")
    rows = [f"gpu_check {'(SMOKE, tiny sizes) ' if head['smoke'] else ''}"
            f"{time.strftime('%Y-%m-%d %H:%M')}: {total:.0f} s, {budget}", "",
            f"{'step':<18} {'status':<18} {'seconds':>8}  what"]
    for spec in STEPS:
        rec = by_name.get(spec.name)
        status = rec["status"] if rec else "not run"
        seconds = f"{rec['seconds']:.0f}" if rec else "-"
        rows.append(f"{spec.name:<18} {status:<18} {seconds:>8}  {spec.what}")
        if rec and rec.get("why"):
            rows.append(f"{'':<18} {rec['why']}")
        for line in (rec or {}).get("last_lines", []):
            rows.append(f"{'':<18} | {line[:200]}")
    rows += ["", "numbers for docs/performance.md:"]
    rows += [f"  {line}" for line in performance_lines(by_name)]
    rows += ["", f"every step's output: {out / LOG}; the records: {out / RECORDS}"]
    text = "\n".join(rows) + "\n"
    (out / SUMMARY).write_text(text)
    print(text, end="")
    bad = [r["name"] for r in records if r["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


def finish(out: Path) -> int:
    """Remove the work folder (runs, checkpoints, data) unless KEEP_WORK=1."""
    head, _ = _read_records(out)
    work = Path(head["work"])
    if os.environ.get("KEEP_WORK") == "1":
        print(f"-- kept the runs and data in {work} (KEEP_WORK=1)")
    elif (work / WORK_MARK).is_file():
        shutil.rmtree(work)
    return 0


# --------------------------------------------------------------------------------------------
# Steps implemented here
# --------------------------------------------------------------------------------------------

def environment() -> dict:
    """Versions and hardware (printed as the step's JSON line)."""
    import platform

    import torch
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    if os.path.isdir("/dev/shm"):
        info["shm_gb"] = round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count(),
                    cudnn=torch.backends.cudnn.version(),
                    bf16=torch.cuda.is_bf16_supported(),
                    nccl=".".join(map(str, torch.cuda.nccl.version())))
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                query = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=20)
                info["driver"] = query.stdout.strip().splitlines()[0] if query.stdout else None
            except (OSError, subprocess.SubprocessError):
                info["driver"] = None
    for key, value in info.items():
        print(f"{key}: {value}")
    return info


def probe_collectives(device_name: str) -> dict:
    """Under torchrun: each collective the code uses, once, on this backend (NCCL on CUDA).

    all_reduce (loss guard, metrics), all_gather through gather_batch forward and backward (the
    gathered loss), all_gather_object (RNG states, decode failures), broadcast (DDP start),
    barrier, a DDP step, and SyncBatchNorm forward/backward on CUDA.
    """
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    from engine.distributed import _GatherWithGrad, choose_backend, resolve_device
    device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = choose_backend("auto", device)
    dist.init_process_group(backend=backend)
    ops: dict[str, str] = {}

    def attempt(name, fn) -> None:
        try:
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ops[name] = "ok"
        except RuntimeError as exc:    # DistBackendError and CUDA errors are RuntimeErrors
            ops[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"

    world = dist.get_world_size()

    def all_reduce():
        t = torch.ones(4, device=device)
        dist.all_reduce(t)
        if float(t[0]) != world:
            raise RuntimeError(f"all_reduce summed to {float(t[0])}, not {world}")

    def gather_grad():
        x = torch.randn(3, 5, device=device, requires_grad=True)
        _GatherWithGrad.apply(x).sum().backward()
        if x.grad is None or float(x.grad[0, 0]) != world:
            raise RuntimeError(f"gathered gradient {x.grad}, expected {world} everywhere")

    def ddp_step():
        model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4)).to(device)
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        ddp(torch.randn(2, 3, 4, 6, 6, device=device)).square().mean().backward()

    attempt("all_reduce", all_reduce)
    attempt("all_gather+backward", gather_grad)
    attempt("all_gather_object", lambda: dist.all_gather_object([None] * world, {"a": 1}))
    attempt("broadcast", lambda: dist.broadcast(torch.zeros(2, device=device), src=0))
    attempt("barrier", dist.barrier)
    attempt("ddp" + ("+syncbn" if device.type == "cuda" else ""), ddp_step)
    dist.destroy_process_group()
    result = {"backend": backend, "device": str(device), "world_size": world, "ops": ops}
    for name, status in ops.items():
        print(f"{name}: {status}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=470.0)
    p.add_argument("--smoke", action="store_true")
    p = sub.add_parser("step", usage="gpu_check.py step --out OUT NAME [--metrics M] -- CMD...")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", default="", help="json | run:DIR | results:DIR")
    p.add_argument("name")
    for name in ("summary", "finish"):
        sub.add_parser(name).add_argument("--out", type=Path, required=True)
    sub.add_parser("env")
    sub.add_parser("probe-collectives").add_argument("--device", default="auto")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = []
    if "--" in argv:     # step: everything after the first "--" is the step's command
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = parser.parse_args(argv)
    if args.command == "init":
        return init(args.out, args.work, args.budget_s, args.smoke)
    if args.command == "step":
        if not command:
            parser.error("step needs a command after --")
        return step(args.out, args.name, command, args.metrics)
    if args.command == "summary":
        return summary(args.out)
    if args.command == "finish":
        return finish(args.out)
    if args.command == "env":
        print(json.dumps(environment()))
        return 0
    result = probe_collectives(args.device)
    print(json.dumps(result))
    return 0 if all(v == "ok" for v in result["ops"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
