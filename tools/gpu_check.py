"""The conformance suite on an NVIDIA GPU, as one prepared run.

For a machine with an NVIDIA GPU, PyTorch and JAX (TensorFlow is not expected):
runs the PyTorch and Flax ports, plus transformers' PyTorch reference when it is
importable, on the GPU, in float32 (TF32 off in every framework) and then in
bfloat16, and writes under $OUT:

    gpu_check.log                  versions, devices, and each phase's tables
    gpu_float32.{json,md,png}      the float32 report
    gpu_bfloat16.{json,md,png}     the bfloat16 report

It installs nothing; a missing library is named in the log. Each phase runs in
its own process under a time limit, both together under 8 minutes. Exit status:
0 when both phases pass, else the first failing phase's (1: a disagreement,
2: nothing compared or a bad option, 3: the time limit left cases unrun, or the
machine lacks what the suite needs, 124: a phase was killed at its limit).

    OUT=/tmp/out python tools/gpu_check.py      (or: bash tools/gpu_check.sh)

It checks the encdec of the checkout it sits in (the repository root goes first
on the import path), with the fixture checkpoints of its tests/fixtures/hf.

GPU_CHECK_DEVICES overrides the device list ("cpu" for a dry run without a GPU),
GPU_CHECK_SECONDS the time budget.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "hf"
sys.path.insert(0, str(REPO))

# Seconds: the whole check stays under 8 minutes, start-up included.
BUDGET = 460
FLOAT32_SHARE = 0.7  # float32 is the table's main row, with gradients: it gets the larger share
# Seconds a phase keeps after its suite's time limit: the case in flight, the report.
REPORT_MARGIN = 60
# Flax compiles every model, input shape and generation setting anew, 2-8 s each
# on an H100: float32 runs the fixtures and the seeded architecture matrix (the
# default model is the seeded bert2bert again when MiniLM is not installed, and
# left out); bfloat16 (no gradients in the table) the fixtures, the model with
# every generation setting, and the tie-breaking model.
FLOAT32_MODELS = "fixture:*,bert2*,roberta2*,bertgen2*"
BFLOAT16_MODELS = "fixture:*,bert2bert,bert2bert_ties"


def _log(handle, text: str) -> None:
    handle.write(text + "\n")
    handle.flush()
    print(text, flush=True)


def _probe(log) -> list[str] | None:
    """Versions and devices in the log; the runner names that can run, or None when the core cannot."""
    _log(log, f"python {sys.version.split()[0]} ({sys.executable})")
    missing = []
    for module in ("numpy", "safetensors", "h5py", "msgpack", "ml_dtypes", "rich", "matplotlib"):
        try:
            _log(log, f"  {module} {getattr(importlib.import_module(module), '__version__', '')}")
        except ImportError as e:
            _log(log, f"  {module}: MISSING ({e})")
            if module not in ("rich", "matplotlib"):  # the report degrades without these two
                missing.append(module)
    if missing:
        _log(log, f"cannot run: encdec's core needs {missing}; install encdec's dependencies and rerun")
        return None
    from encdec.conformance.runners import RUNNERS

    found = []
    for name in ("pt", "flax", "hf"):
        reason = RUNNERS[name].unavailable()
        _log(log, f"  {name} ({RUNNERS[name].label}): " + ("available" if reason is None else f"unavailable: {reason}"))
        if reason is None:
            found.append(name)
    try:
        import torch

        cuda = torch.cuda.is_available()
        _log(log, f"  torch {torch.__version__}: cuda {cuda} {torch.cuda.get_device_name(0) if cuda else ''}")
    except ImportError:
        pass
    try:
        import jax

        _log(log, f"  jax {jax.__version__}: devices {jax.devices()}")
    except ImportError:
        pass
    return found


def _phase(log, out: str, name: str, frameworks: list[str], devices: str, dtype: str, models: str,
           seconds: float) -> int:
    report = os.path.join(out, f"{name}.json")
    # The suite stops starting model cases in time to write its report; the
    # process limit behind it only catches a case that hangs.
    cmd = [sys.executable, "-m", "encdec.conformance", "--frameworks", ",".join(frameworks), "--devices", devices,
           "--dtypes", dtype, "--cases", "quick", "--fixtures", str(FIXTURES), "--models", models, "--no-progress",
           "--report", report, "--time-limit", f"{max(seconds - REPORT_MARGIN, 1):.0f}"]
    _log(log, f"\n== {name}: {' '.join(cmd[1:])} (limit {seconds:.0f} s)")
    start = time.time()
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds,
                              env=env)
        status, text = done.returncode, done.stdout
    except subprocess.TimeoutExpired as e:
        status = 124
        text = (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or "") + "\n(time limit reached)"
    _log(log, text.rstrip())
    _log(log, f"== {name}: exit status {status} after {time.time() - start:.0f} s")
    return status


def main() -> int:
    out = os.environ.get("OUT")
    if not out:
        print("gpu_check: set OUT to the folder the reports are written to", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    start = time.time()
    devices = os.environ.get("GPU_CHECK_DEVICES", "gpu")
    budget = float(os.environ.get("GPU_CHECK_SECONDS", BUDGET))
    with open(os.path.join(out, "gpu_check.log"), "w") as log:
        _log(log, f"== gpu_check {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, devices {devices}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            _log(log, "nvidia-smi: " + (smi.stdout.strip() or smi.stderr.strip()))
        except (OSError, subprocess.TimeoutExpired) as e:
            _log(log, f"nvidia-smi: {e}")
        frameworks = _probe(log)
        if frameworks is None:
            return 3
        if not frameworks:
            _log(log, "cannot run: none of pt, flax, hf is available")
            return 3
        left = budget - (time.time() - start)
        first = _phase(log, out, "gpu_float32", frameworks, devices, "float32", FLOAT32_MODELS,
                       left * FLOAT32_SHARE)
        left = budget - (time.time() - start)
        second = _phase(log, out, "gpu_bfloat16", frameworks, devices, "bfloat16", BFLOAT16_MODELS, max(left, 30))
        _log(log, f"\n== gpu_check done in {time.time() - start:.0f} s: float32 {first}, bfloat16 {second}")
        return first or second


if __name__ == "__main__":
    sys.exit(main())
