"""Exported generation: encdec's ONNX export on onnxruntime against optimum's own export, encdec's
PyTorch port and transformers, on the MiniLM bert2bert.

    .venv/bin/python benchmarks/export_bench.py [--quick] [--append benchmarks/RESULTS.md]

The checkpoint is the one `run.py` times (MiniLM joined with itself by encdec's PyTorch port,
saved once). Four contenders generate from it, batch 1 and 4, greedy and 4 beams, input length 64,
`max_length` 32 (as run.py's generate section):

- encdec ONNX: `encdec export DIR OUT --to onnx` (three graphs, decoder cache), run by
  `encdec.onnx` (numpy + onnxruntime);
- optimum ONNX: optimum's exporter (`main_export(..., task="text2text-generation")`: a bert2bert
  export without decoder cache, as optimum writes it) run by its `ORTModelForSeq2SeqLM`. optimum
  needs transformers 4.57 (`.venv-optimum`, tools/venv_optimum.sh), so it runs in a worker
  process of that environment, loaded once and commanded over stdin/stdout, one JSON line each way;
- encdec PT and transformers (this environment's, 5.x): `from_pretrained(DIR)`, `generate`.

Every contender runs with `--threads` threads (torch's, onnxruntime's intra-op pool; one inter-op
thread). Within a case each contender makes one warm-up call (its ids are the ones compared), then
the contenders alternate, A, B, C, D, A, B, ...; each contender times its own `generate` call (the
worker reports its time, so the pipe is not counted) and the median is reported.

Prints a markdown section "## Exported generation"; `--append FILE` also writes it into FILE,
replacing the section of that name if FILE has one, else appending it (the rest of FILE is kept
byte for byte). `--quick` runs a tiny random bert2bert with short inputs to check that the script
works (seconds, not minutes; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import common  # noqa: E402

ONNX = "encdec ONNX (onnxruntime)"
OPTIMUM = "optimum ONNX, no cache (onnxruntime)"
PT = common.PT
HF = common.HF
CONTENDERS = (ONNX, OPTIMUM, PT, HF)
HEADING = "## Exported generation"
VENV_OPTIMUM = os.environ.get("VENV_OPTIMUM", os.path.join(REPO, ".venv-optimum"))
# Targets of encdec's export: at most this fraction of optimum's time, and of encdec PT's.
TARGET_VS_OPTIMUM, TARGET_VS_PT = 0.5, 1.0


def settings(quick: bool) -> dict:
    if quick:
        return dict(batches=[1], modes=["greedy", "beam4"], input_length=16, max_length=8, repeats=1, min_repeats=1,
                    case_budget=5.0, tiny=dict(layers=2, hidden=64, vocab=1000))
    return dict(batches=[1, 4], modes=["greedy", "beam4"], input_length=64, max_length=32, repeats=7, min_repeats=3,
                case_budget=90.0, tiny=None)


def cases(cfg: dict) -> list[dict]:
    return [dict(key=f"{mode} batch {batch}", mode=mode, batch=batch,
                 options=dict(max_length=cfg["max_length"], num_beams=4 if mode == "beam4" else 1, do_sample=False))
            for mode in cfg["modes"] for batch in cfg["batches"]]


def case_inputs(batch: int, length: int, vocab: int):
    """run.py's MiniLM inputs (`common.minilm_inputs`) as int64; ids folded into a smaller vocabulary."""
    ids, mask = common.minilm_inputs(batch, length)
    ids, mask = ids.astype("int64"), mask.astype("int64")
    if vocab <= 29000:
        ids[:, 1:-1] %= vocab
    return ids, mask


def onnx_session_options(threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return options


# ---------------------------------------------------------------------------
# The optimum worker (runs in .venv-optimum: no encdec there)


def optimum_worker(folder: str, export_dir: str, threads: int) -> int:
    """Export `folder` with optimum into `export_dir`, load it once, then answer one JSON line per command
    on stdin: {"op": "case", "key", "input_ids", "attention_mask", "options"}, {"op": "run", "key"}
    -> {"seconds", "ids"}, {"op": "quit"}."""
    # The protocol owns the real stdout; anything the libraries print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    common.configure_environment(threads)
    warnings.filterwarnings("ignore")
    import importlib.metadata

    import numpy as np
    import torch
    from optimum.exporters.onnx import main_export
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    torch.set_num_threads(threads)
    start = time.perf_counter()
    main_export(folder, export_dir, task="text2text-generation")
    export_s = time.perf_counter() - start
    model = ORTModelForSeq2SeqLM.from_pretrained(export_dir, use_cache=False,
                                                 session_options=onnx_session_options(threads))
    versions = {name: importlib.metadata.version(name)
                for name in ("optimum", "optimum-onnx", "onnxruntime", "transformers", "torch")}

    def send(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    send(dict(ready=True, export_s=export_s, versions=versions, use_cache=bool(model.use_cache),
              files=sorted(f for f in os.listdir(export_dir) if f.endswith(".onnx"))))
    inputs = {}
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        if command["op"] == "case":
            inputs[command["key"]] = (torch.tensor(command["input_ids"]), torch.tensor(command["attention_mask"]),
                                      command["options"])
            send(dict(ok=True))
            continue
        ids, mask, options = inputs[command["key"]]
        with torch.inference_mode():
            start = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, **options)
            seconds = time.perf_counter() - start
        send(dict(seconds=seconds, ids=np.asarray(out).tolist()))
    return 0


class OptimumWorker:
    """The driver's end of `optimum_worker`."""

    def __init__(self, folder: str, export_dir: str, threads: int, log_path: str):
        python = os.path.join(VENV_OPTIMUM, "bin", "python")
        if not os.path.isfile(python):
            raise FileNotFoundError(f"{python}: no .venv-optimum; create it with `bash tools/venv_optimum.sh`")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the worker imports no encdec
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen([python, os.path.abspath(__file__), "--optimum-worker", folder, export_dir,
                                         "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env, cwd=REPO)
        self.info = self._receive()

    def _receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            with open(self.log_path) as f:
                tail = f.read().strip().splitlines()[-5:]
            raise RuntimeError("the optimum worker stopped: " + " / ".join(tail))
        return json.loads(line)

    def command(self, **message) -> dict:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._receive()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps(dict(op="quit")) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.SubprocessError):
                self.process.kill()
        self.log.close()


# ---------------------------------------------------------------------------
# The contenders of the driver's process


def encdec_onnx_runner(path: str, threads: int):
    """`encdec.onnx.load(path)` with its three sessions under `threads` intra-op threads."""
    from encdec import onnx as encdec_onnx

    return encdec_onnx.load(path, session_options=onnx_session_options(threads))


def local_contenders(folder: str, onnx_dir: str, threads: int) -> dict:
    """name -> generate(ids, mask, options) -> numpy ids, for the contenders of this process."""
    import torch
    import transformers

    import encdec

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    runner = encdec_onnx_runner(onnx_dir, threads)
    pt = encdec.EncoderDecoderModel.from_pretrained(folder).eval()
    hf = transformers.EncoderDecoderModel.from_pretrained(folder).eval()

    def torch_generate(model):
        def run(ids, mask, options):
            with torch.inference_mode():
                return model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **options).numpy()
        return run

    return {ONNX: lambda ids, mask, options: runner.generate(ids, mask, **options),
            PT: torch_generate(pt), HF: torch_generate(hf)}


# ---------------------------------------------------------------------------
# Timing


def time_case(case: dict, ids, mask, local: dict, worker, cfg: dict) -> dict:
    """Warm-up call of each contender, then alternated rounds; name -> record (times, median_s, ids)."""
    import numpy as np

    def call(name):
        if name == OPTIMUM:
            answer = worker.command(op="run", key=case["key"])
            return answer["seconds"], np.asarray(answer["ids"])
        start = time.perf_counter()
        out = local[name](ids, mask, case["options"])
        return time.perf_counter() - start, np.asarray(out)

    records, live = {}, []
    if worker is not None:
        worker.command(op="case", key=case["key"], input_ids=ids.tolist(), attention_mask=mask.tolist(),
                       options=case["options"])
    for name in CONTENDERS:
        if name not in local and (name != OPTIMUM or worker is None):
            records[name] = dict(available=False, reason="not available")
            continue
        try:
            first_s, value = call(name)
        except Exception as e:  # noqa: BLE001 - one broken contender must not end the run
            records[name] = dict(available=False, reason=f"failed: {common.short_error(e)}")
            continue
        records[name] = dict(available=True, first_s=first_s, ids=value, times=[])
        live.append(name)
    per_round = sum(records[name]["first_s"] for name in live)
    rounds = min(cfg["repeats"], max(cfg["min_repeats"], int(cfg["case_budget"] / max(per_round, 1e-9))))
    for _ in range(rounds):
        for name in live:
            records[name]["times"].append(call(name)[0])
    for name in live:
        rec = records[name]
        rec["median_s"] = statistics.median(rec["times"])
        rec["runs"] = len(rec["times"])
    reference = records.get(PT, {}).get("ids")
    for name in live:
        value = records[name].pop("ids")
        records[name]["shape"] = list(value.shape)
        records[name]["same_ids_as_pt"] = (None if reference is None else
                                           bool(value.shape == reference.shape and (value == reference).all()))
    return records


def ratio(records: dict, num: str, den: str):
    a, b = records.get(num, {}), records.get(den, {})
    return a["median_s"] / b["median_s"] if a.get("available") and b.get("available") else None


# ---------------------------------------------------------------------------
# Report


def fmt_s(seconds) -> str:
    return "—" if seconds is None else (f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def fmt_ratio(value) -> str:
    return "—" if value is None else f"{value:.2f}x"


def targets(records: dict) -> dict:
    vs_optimum, vs_pt = ratio(records, ONNX, OPTIMUM), ratio(records, ONNX, PT)
    return dict(vs_optimum=vs_optimum, vs_pt=vs_pt,
                met_vs_optimum=None if vs_optimum is None else vs_optimum <= TARGET_VS_OPTIMUM,
                met_vs_pt=None if vs_pt is None else vs_pt <= TARGET_VS_PT)


def verdict(met) -> str:
    return "not measured" if met is None else ("met" if met else "missed")


def render(result: dict) -> str:
    cfg = result["settings"]
    lines = [HEADING, ""]
    lines.append(
        f"Generation from exported models against the PyTorch models ({result['command']}; {result['date']}). "
        f"Checkpoint: {result['checkpoint']}. Input length {cfg['input_length']} (all ones mask), "
        f"`max_length={cfg['max_length']}`, `do_sample=False`; greedy and 4 beams. {result['threads']} threads "
        "for every contender (torch threads; onnxruntime intra-op "
        f"{result['threads']}, inter-op 1). Within a case every contender makes one warm-up call, then they "
        "alternate run by run; each times its own `generate` call (optimum's worker process reports its "
        "own time), and the table gives the median.")
    lines.append("")
    lines.append(f"- {ONNX}: `encdec export DIR OUT --to onnx` (encoder, decoder, decoder with past: a decoder "
                 "cache), run by `encdec.onnx` (numpy + onnxruntime).")
    optimum = result.get("optimum", {})
    lines.append(f"- {OPTIMUM}: optimum's exporter (`main_export(DIR, OUT, task=\"text2text-generation\")`; "
                 "it writes bert2bert without a decoder cache: every step runs the decoder over the whole "
                 "prefix), run by `ORTModelForSeq2SeqLM` in `.venv-optimum`"
                 + (f" (graphs: {', '.join(optimum['files'])})" if optimum.get("files") else "")
                 + (f"; not available: {optimum['reason']}" if optimum.get("reason") else "") + ".")
    lines.append(f"- {PT}: `encdec.EncoderDecoderModel.from_pretrained(DIR).generate`.")
    lines.append(f"- {HF}: `transformers.EncoderDecoderModel.from_pretrained(DIR).generate` (this environment's "
                 "transformers).")
    lines.append("")
    versions = dict(result["versions"])
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
                 + ("; in .venv-optimum: " + ", ".join(f"{k} {v}" for k, v in optimum["versions"].items())
                    if optimum.get("versions") else "") + ".")
    loads = result["load_average"]
    lines.append(f"Machine: {result['cpu']}, {result['cores']} usable cores; 1-minute load average "
                 f"{loads['start']} at the start, {loads['end']} at the end"
                 + (" (other processes shared the cores: absolute times are inflated and noisy; the alternation "
                    "spreads that load over the contenders, but torch's thread pool loses far more to a shared core than "
                    "onnxruntime's, so the ratios against encdec PT and transformers are skewed too)" if max(loads["start"] or 0, loads["end"] or 0)
                    > result["cores"] else "") + ".")
    lines.append(f"Targets: {ONNX} at most {TARGET_VS_OPTIMUM}x the time of {OPTIMUM}, and at most "
                 f"{TARGET_VS_PT}x the time of {PT}, on every case.")
    if result.get("quick"):
        lines.append("")
        lines.append("**`--quick` run: a tiny random bert2bert, short inputs, one run; the numbers mean nothing.**")
    for case in result["cases"]:
        records = case["records"]
        lines += ["", f"### {case['key']}", "",
                  "| contender | median | runs | warm-up call | vs optimum ONNX | vs encdec PT | ids equal to encdec PT's |",
                  "|---|---|---|---|---|---|---|"]
        for name in CONTENDERS:
            rec = records[name]
            if not rec.get("available"):
                lines.append(f"| {name} | {rec.get('reason')} | | | | | |")
                continue
            same = rec["same_ids_as_pt"]
            lines.append(f"| {name} | {fmt_s(rec['median_s'])} | {rec['runs']} | {fmt_s(rec['first_s'])} | "
                         f"{fmt_ratio(ratio(records, name, OPTIMUM))} | {fmt_ratio(ratio(records, name, PT))} | "
                         f"{'—' if same is None else ('equal' if same else 'NOT equal')} |")
        t = case["targets"]
        lines += ["", f"Targets: vs optimum {fmt_ratio(t['vs_optimum'])} (≤ {TARGET_VS_OPTIMUM}x): "
                  f"{verdict(t['met_vs_optimum'])}; vs encdec PT {fmt_ratio(t['vs_pt'])} (≤ {TARGET_VS_PT}x): "
                  f"{verdict(t['met_vs_pt'])}."]
    lines += ["", "| case | encdec ONNX / optimum ONNX | target ≤ 0.5x | encdec ONNX / encdec PT | target ≤ 1.0x | "
              "all ids equal |", "|---|---|---|---|---|---|"]
    for case in result["cases"]:
        t, records = case["targets"], case["records"]
        equal = [records[n]["same_ids_as_pt"] for n in CONTENDERS if records[n].get("available")]
        unequal = [n for n in CONTENDERS if records[n].get("available") and records[n]["same_ids_as_pt"] is False]
        lines.append(f"| {case['key']} | {fmt_ratio(t['vs_optimum'])} | {verdict(t['met_vs_optimum'])} | "
                     f"{fmt_ratio(t['vs_pt'])} | {verdict(t['met_vs_pt'])} | "
                     + ("yes" if equal and all(e is True for e in equal) else
                        "no: " + ", ".join(unequal) if unequal else "not compared") + " |")
    return "\n".join(lines) + "\n"


def write_section(path: str, section: str) -> None:
    """Put `section` (starting with HEADING) into the file at `path`: in place of the section of that
    heading (up to the next `## ` heading or the end), else appended after a blank line."""
    text = open(path, encoding="utf-8", newline="").read() if os.path.exists(path) else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\r\n") == HEADING), None)
    if start is None:
        before = text + ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "")
        after = ""
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before, after = "".join(lines[:start]), "".join(lines[end:])
        if after:
            section += "\n"  # the blank line before the next heading
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(before + section + after)


# ---------------------------------------------------------------------------


def make_folder(folder: str, cfg: dict) -> str:
    """run.py's MiniLM bert2bert (or, `--quick`, a tiny random one); a description of it."""
    if cfg["tiny"]:
        import convert_bench

        tiny = cfg["tiny"]
        convert_bench.make_checkpoint(folder, layers=tiny["layers"], vocab=tiny["vocab"], hidden=tiny["hidden"])
        return (f"a random bert2bert (init_weights: hidden {tiny['hidden']}, {tiny['layers']}+{tiny['layers']} "
                f"layers, vocabulary {tiny['vocab']})")
    import run

    info = run.make_minilm_folder(None, folder)
    return f"MiniLM-L6-H384 bert2bert, {info['how']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and settings, to check that the script works")
    parser.add_argument("--append", metavar="FILE", help="also write the section into FILE (replacing its own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="alternated runs per case (default 7; --quick 1)")
    parser.add_argument("--json", help="also write the raw results as JSON here")
    parser.add_argument("--workdir", help="keep the checkpoint and the exports here (default: a temporary folder)")
    parser.add_argument("--optimum-worker", nargs=2, metavar=("FOLDER", "EXPORT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.optimum_worker:
        return optimum_worker(*args.optimum_worker, args.threads)
    cfg = settings(args.quick)
    if args.repeats:
        cfg["repeats"] = args.repeats
    common.configure_environment(args.threads)
    sys.path.insert(0, REPO)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    warnings.filterwarnings("ignore")
    logging.getLogger("encdec").setLevel(logging.ERROR)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from encdec.export import export

    load_start = common.load_average()
    workdir = args.workdir or tempfile.mkdtemp(prefix="encdec-export-bench-")
    os.makedirs(workdir, exist_ok=True)
    folder, onnx_dir, optimum_dir = (os.path.join(workdir, n) for n in ("model", "encdec-onnx", "optimum-onnx"))
    worker = None
    result = dict(command="benchmarks/export_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), quick=args.quick, threads=args.threads,
                  settings=cfg, cpu=common.cpu_model(),
                  cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    try:
        for path in (folder, onnx_dir, optimum_dir):
            shutil.rmtree(path, ignore_errors=True)
        log("checkpoint")
        result["checkpoint"] = make_folder(folder, cfg)
        log("encdec export --to onnx")
        start = time.perf_counter()
        export(folder, onnx_dir, to="onnx")
        result["encdec_export_s"] = time.perf_counter() - start
        log("optimum worker (export, load)")
        try:
            worker = OptimumWorker(folder, optimum_dir, args.threads, os.path.join(workdir, "optimum-worker.log"))
            result["optimum"] = worker.info
        except Exception as e:  # noqa: BLE001 - reported as not available
            result["optimum"] = dict(reason=common.short_error(e))
            worker = None
        log("loading encdec ONNX, encdec PT, transformers")
        local = local_contenders(folder, onnx_dir, args.threads)
        vocab = json.load(open(os.path.join(folder, "config.json")))["encoder"]["vocab_size"]
        result["cases"] = []
        for case in cases(cfg):
            log(case["key"])
            ids, mask = case_inputs(case["batch"], cfg["input_length"], vocab)
            records = time_case(case, ids, mask, local, worker, cfg)
            result["cases"].append(dict(case, records=records, targets=targets(records)))
            log("  " + "; ".join(f"{n} {fmt_s(r.get('median_s'))}" for n, r in records.items()))
    finally:
        if worker is not None:
            worker.close()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    versions = common.versions()
    result["versions"] = {k: versions[k] for k in ("encdec", "encdec commit", "numpy", "torch", "transformers")
                          if k in versions}
    import onnxruntime

    result["versions"]["onnxruntime"] = onnxruntime.__version__
    result["load_average"] = dict(start=(load_start or [None])[0], end=(common.load_average() or [None])[0])
    section = render(result)
    print(section)
    if args.append:
        write_section(args.append, section)
        log(f"wrote the section into {args.append}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
