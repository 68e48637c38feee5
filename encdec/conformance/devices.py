"""Which devices each framework can use, the run plan, and TF32 switched off.

Device classes are "cpu", "gpu" and "tpu". Each framework library is probed
for the classes it sees (importing it only then); a requested class a
framework lacks becomes a `Skip` with its reason, never an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from typing import Callable, Iterable

DEVICE_CLASSES = ("cpu", "gpu", "tpu")
DTYPES = ("float32", "bfloat16")


def _probe_torch() -> dict[str, str]:
    import torch

    found = {"cpu": "cpu"}
    if torch.cuda.is_available():
        found["gpu"] = "cuda:0"
    return found


def _probe_tensorflow() -> dict[str, str]:
    with without_c_logs():
        import tensorflow as tf

    found = {"cpu": "/CPU:0"}
    if tf.config.list_physical_devices("GPU"):
        found["gpu"] = "/GPU:0"
    if tf.config.list_logical_devices("TPU"):
        found["tpu"] = "/TPU:0"
    return found


def _probe_jax() -> dict[str, str]:
    import jax

    found = {"cpu": "cpu"}
    for cls in ("gpu", "tpu"):
        try:
            if jax.devices(cls):
                found[cls] = cls
        except RuntimeError:  # jax raises when no backend of that kind is present
            pass
    return found


# library -> probe returning {device class: the name the runner places work on}.
# Tests replace entries to simulate devices that are absent or present.
PROBES: dict[str, Callable[[], dict[str, str]]] = {
    "torch": _probe_torch,
    "tensorflow": _probe_tensorflow,
    "jax": _probe_jax,
}


def probe(library: str) -> dict[str, str]:
    return PROBES[library]()


def disable_tf32(library: str) -> None:
    """Full fp32 matmuls and convolutions, so GPU numbers compare to CPU ones."""
    if library == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    elif library == "tensorflow":
        with without_c_logs():
            import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif library == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    else:
        raise ValueError(f"unknown framework library {library!r}; expected one of {sorted(PROBES)}")


# A C++ log line of absl (TensorFlow, XLA): "I0000 00:00:1796380139.799352   17087 port.cc:153] ...",
# and the notice absl prints before its first such line.
C_LOG_LINE = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
                        r"|WARNING: All log messages before absl::InitializeLog\(\) is called")


@contextlib.contextmanager
def without_c_logs():
    """Leave out the C++ log lines written to file descriptor 2 inside the block
    when TensorFlow's C++ logging is off (TF_CPP_MIN_LOG_LEVEL=3).

    TensorFlow prints its oneDNN notice at import through absl, which that
    setting does not reach. Everything else written there (Python warnings, a
    traceback) is passed on when the block ends.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not C_LOG_LINE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


@dataclasses.dataclass(frozen=True)
class Run:
    """One runner on one device in one dtype."""

    framework: str  # runner name: "hf", "pt", "tf", "flax"
    device: str  # device class
    device_name: str  # what the runner places work on ("cuda:0", "/GPU:0", "gpu")
    dtype: str

    @property
    def key(self) -> str:
        return f"{self.framework}@{self.device}/{self.dtype}"


@dataclasses.dataclass(frozen=True)
class Skip:
    framework: str
    device: str
    dtype: str | None
    reason: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def plan_runs(
    runners: Iterable,
    devices: Iterable[str],
    dtypes: Iterable[str],
) -> tuple[list[Run], list[Skip]]:
    """Every (runner, device, dtype) to run, and every one skipped with its reason.

    `runners` are runner classes (see runners.py): each has `name`, `library`
    and `supports_dtype(device_class, dtype)`.
    """
    devices, dtypes = list(devices), list(dtypes)
    for d in devices:
        if d not in DEVICE_CLASSES:
            raise ValueError(f"unknown device {d!r}; expected some of {', '.join(DEVICE_CLASSES)}")
    for t in dtypes:
        if t not in DTYPES:
            raise ValueError(f"unknown dtype {t!r}; expected some of {', '.join(DTYPES)}")
    runs, skips = [], []
    for runner in runners:
        present = probe(runner.library)
        for device in devices:
            if device not in present:
                skips.append(Skip(runner.name, device, None, f"absent: {runner.library} sees no {device.upper()}"))
                continue
            for dtype in dtypes:
                reason = runner.supports_dtype(device, dtype)
                if reason is not None:
                    skips.append(Skip(runner.name, device, dtype, reason))
                else:
                    runs.append(Run(runner.name, device, present[device], dtype))
    return runs, skips
