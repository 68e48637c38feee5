"""The report of a benchmark run: the targets, each measured value against its limit, and the Markdown.

`run.py` measures and hands its results dict here; `run.py --render JSON` rewrites
the report from a saved results JSON without measuring anything. Nothing here
imports a framework.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from common import FLAX, HF, MATMUL, PT, TF_XLA, ratio

# The limits the run is measured against (docs/performance.md, "Targets").
TARGETS = dict(
    forward_pt=0.9,
    generate_pt=0.6,
    generate_compiled_vs_pt=1.0,
    tf_xla_vs_eager=0.5,
    convert_peak=1.5,
    import_s=0.1,
    flop_fraction=0.70,
)


# ---------------------------------------------------------------------------
# Derived numbers and targets


def add_flop_fractions(results: dict) -> None:
    """Each forward rate as a fraction of the machine's matmul rate.

    The rate divided by is the higher of the matmul section's (measured before any model
    ran) and that of the same matmul timed within the case's own alternated rounds (the
    same load as the forward passes, on a shared machine): the higher one is the stricter.
    """
    mm = results.get("matmul") or {}
    section = mm.get("gflops") if mm.get("available") else None
    for case in (results.get("forward") or {}).get("cases", []):
        in_case = (case["impls"].get(MATMUL) or {}).get("gflops")
        rates = [r for r in (section, in_case) if r]
        case["matmul_gflops"] = max(rates) if rates else None
        for rec in case["impls"].values():
            if rec.get("available") and rec.get("gflops") is not None:
                rec["fraction_of_matmul"] = rec["gflops"] / case["matmul_gflops"] if case["matmul_gflops"] else None


def evaluate_targets(results: dict) -> list[dict]:
    rows = []

    def add(name, measured, limit, text, higher=False, detail=""):
        rows.append(dict(target=name, measured=measured, limit=limit, measured_text=text,
                         met=None if measured is None else ((measured >= limit) if higher else (measured <= limit)),
                         verdict=verdict(measured, limit, higher), detail=detail))

    def spread(values):
        values = [(v, label) for v, label in values if v is not None]
        if not values:
            return None, "not measured"
        worst = max(values)
        best = min(values)
        text = f"{best[0]:.2f}x – {worst[0]:.2f}x" if len(values) > 1 else f"{worst[0]:.2f}x"
        return worst[0], text + (f" (worst: {worst[1]})" if len(values) > 1 else "")

    fwd = results.get("forward", {})
    if fwd.get("cases"):
        worst, text = spread([(c["pt_vs_transformers"], f"{c['model']} b{c['batch']} L{c['source_length']}")
                              for c in fwd["cases"]])
        n_met = sum(1 for c in fwd["cases"] if c["pt_vs_transformers"] is not None and c["pt_vs_transformers"] <= TARGETS["forward_pt"])
        add("PT forward / transformers", worst, TARGETS["forward_pt"], text,
            detail=f"{n_met} of {len(fwd['cases'])} cases met")
        big = [c for c in fwd["cases"] if c["model"] == "base"]
        big = max(big, key=lambda c: (c["batch"], c["source_length"])) if big else None
        if big:
            for name in (PT, HF):
                rec = big["impls"].get(name, {})
                frac = rec.get("fraction_of_matmul")
                add(f"forward FLOP rate / matmul rate, {name}, base b{big['batch']} L{big['source_length']}",
                    frac, TARGETS["flop_fraction"], "—" if frac is None else f"{100 * frac:.0f}%", higher=True,
                    detail="" if frac is None else f"{rec['gflops']:.0f} GFLOP/s")

    gen = results.get("generate", {})
    if gen.get("cases"):
        for mode in ("greedy", "beam4"):
            cases = [c for c in gen["cases"] if c["mode"] == mode]
            if not cases:
                continue
            worst, text = spread([(c["ratios"]["encdec PT / transformers"], f"b{c['batch']} max{c['max_length']}")
                                  for c in cases])
            add(f"PT {mode} generate / transformers", worst, TARGETS["generate_pt"], text)
        for key, label in (("encdec Flax jit / encdec PT", "Flax jit generate (warm) / encdec PT"),
                           ("encdec TF XLA / encdec PT", "TF XLA generate (warm) / encdec PT")):
            worst, text = spread([(c["ratios"][key], f"{c['mode']} b{c['batch']} max{c['max_length']}")
                                  for c in gen["cases"]])
            add(label, worst, TARGETS["generate_compiled_vs_pt"], text)
        worst, text = spread([(c["ratios"]["encdec TF XLA / encdec TF eager"], f"{c['mode']} b{c['batch']} max{c['max_length']}")
                              for c in gen["cases"]])
        add("TF XLA generate / TF eager generate", worst, TARGETS["tf_xla_vs_eager"], text)
        for name in (TF_XLA, FLAX):
            recs = [c["impls"].get(name, {}) for c in gen["cases"]]
            recs = [r for r in recs if r.get("available") and "second_call_compiled" in r]
            if not recs:
                add(f"{name}: 2nd generate call compiles nothing", None, 0, "not measured")
                continue
            compiled = sum(1 for r in recs if r["second_call_compiled"])
            slow = max(r["second_over_median"] for r in recs)
            add(f"{name}: 2nd generate call compiles nothing", compiled, 0,
                f"{compiled} of {len(recs)} cases compiled", detail=f"2nd call / warm median <= {slow:.2f}")

    conv = results.get("convert", {})
    if conv.get("available"):
        rows_c = [r for r in conv["rows"] if r["what"].startswith("encdec")]
        worst, text = spread([(r["peak_over_size"], r["what"].replace("encdec convert ", "")) for r in rows_c])
        add("conversion peak RSS / checkpoint size", worst, TARGETS["convert_peak"], text)

    imp = results.get("import", {})
    if imp.get("available"):
        add("`import encdec` time", imp["median_s"], TARGETS["import_s"], fmt_time(imp["median_s"]),
            detail="frameworks imported: " + (", ".join(imp["frameworks_imported"]) or "none"))
    return rows


# ---------------------------------------------------------------------------
# Markdown


def render_markdown(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    lines = [
        "# encdec benchmarks",
        "",
        f"Written by `{results['command']}` on {results['date']}, in {results['wall_s'] / 60:.1f} minutes. "
        + ("**Quick run: tiny settings, the numbers mean nothing.**" if results["quick"] else ""),
        "",
        "Every implementation loads the same checkpoint folder and gets the same inputs; within each case "
        "the implementations alternate run by run, after a first call (compilation; reported apart) and a "
        "second call (checked to compile nothing). Times are medians of the alternated runs. "
        f"torch, TensorFlow and XLA run with {results['threads']} threads each (torch inter-op 1, TF inter-op 1). "
        "CPU/wall is the process's CPU time over the wall time of a run (median): near the thread count on a "
        "free machine, lower when other processes take the cores.",
        "",
        "## Machine",
        "",
        table(["", ""], [
            ["CPU", m["cpu"]],
            ["cores (os.cpu_count / usable)", f"{m['cores']} / {m['usable_cores']}"],
            ["CPU flags", ", ".join(m["cpu_flags"]) or "—"],
            ["memory", fmt_bytes(m["memory_bytes"])],
            ["load average at start / end", f"{m['load_average_at_start']} / {m.get('load_average_at_end')}"],
            ["platform", m["platform"]],
            ["python", m["python"]],
        ] + [[k, val] for k, val in v.items()]),
        "",
    ]
    for note in results.get("notes", []):
        lines += [f"**Note:** {note}", ""]
    if results.get("framework_errors"):
        lines += ["Framework import errors: " + "; ".join(f"{k}: {e}" for k, e in results["framework_errors"].items()), ""]

    targets = results.get("targets", [])
    if targets:
        lines += ["## Targets (ratios measured in this run)", "",
                  table(["target", "measured", "limit", "met?", "notes"],
                        [[t["target"], t["measured_text"], _limit_text(t), t["verdict"], t["detail"]] for t in targets]),
                  ""]
        missed = [t for t in targets if t["met"] is False]
        if missed:
            lines += ["Missed: " + "; ".join(f"{t['target']} {t['verdict'].replace('NO ', '')}" for t in missed)
                      + ". See the sections below for every case.", ""]

    imp = results.get("import")
    if imp is not None:
        lines += ["## `import encdec`", ""]
        if imp.get("available"):
            lines += [f"Median of {len(imp['times'])} fresh interpreters (after one dropped warm-up): "
                      f"**{fmt_time(imp['median_s'])}** (runs: {', '.join(fmt_time(t) for t in imp['times'])}); "
                      f"frameworks imported: {', '.join(imp['frameworks_imported']) or 'none'}; "
                      f"{imp['modules']} modules in sys.modules.", ""]
        else:
            lines += [f"not available: {imp.get('reason')}", ""]

    mm = results.get("matmul")
    if mm is not None:
        lines += ["## Machine matmul rate", ""]
        if mm.get("available"):
            lines += [f"`torch.matmul` of two float32 {mm['n']}x{mm['n']} matrices, {mm['threads']} threads, "
                      f"median of {mm['runs']}: **{mm['gflops']:.1f} GFLOP/s** ({fmt_time(mm['median_s'])}; "
                      f"best run {mm['best_gflops']:.1f} GFLOP/s"
                      + (f"; measured again after the forward and generation sections: {mm['gflops_after']:.1f} GFLOP/s"
                         if mm.get("gflops_after") else "")
                      + "). On a shared machine this rate moves with the load, so the same matmul is also timed "
                      "within each forward case's alternated rounds (row `torch.matmul reference`); the forward tables "
                      "divide each achieved rate by the higher of the two (the stricter).", ""]
        else:
            lines += [f"not available: {mm.get('reason')}", ""]

    fwd = results.get("forward")
    if fwd is not None:
        lines += ["## Forward pass", "",
                  "`model(input_ids, attention_mask, decoder_input_ids).logits`, decoder length = input length, "
                  "no gradients (`torch.inference_mode`; TF `training=False`). FLOPs counted from the config: "
                  "2 x weights-in-matmuls x tokens (encoder, decoder self/cross, cross K/V over the encoder tokens, "
                  "LM head) + attention score and value matmuls over the full square. "
                  "TF XLA is `tf.function(model.call, jit_compile=True)`; Flax is the port's own `jax.jit`.", ""]
        for name, info in fwd.get("checkpoints", {}).items():
            loads = ", ".join(f"{k} {fmt_time(s)}" for k, s in info.get("load_seconds", {}).items() if s is not None)
            lines += [f"- **{name}**: {info.get('how', '')}; weights {fmt_bytes(info.get('folder_bytes'))}"
                      + (f"; from_pretrained: {loads}" if loads else ""), ""]
        rows = []
        for c in fwd.get("cases", []):
            for name, rec in c["impls"].items():
                case = f"{c['model']} b{c['batch']} L{c['source_length']}"
                if not rec.get("available"):
                    rows.append([case, name, rec.get("reason"), "", "", "", "", "", "", "", ""])
                    continue
                frac = rec.get("fraction_of_matmul")
                is_ref = name == MATMUL
                rows.append([
                    case, name, fmt_time(rec["first_s"]), fmt_time(rec["median_s"]), rec["runs"],
                    _cpu(rec),
                    "—" if is_ref else (fmt_ratio(ratio(c["impls"], name, HF)) if name != HF else "1.00x"),
                    f"{(rec['gflops'] * rec['median_s'] if is_ref else c['flops']['total']) / 1e9:.1f}",
                    f"{rec['gflops']:.1f}",
                    "—" if frac is None else f"{100 * frac:.0f}%",
                    "—" if rec.get("max_abs_diff") is None else f"{rec['max_abs_diff']:.1e}",
                ])
        lines += [table(["case", "implementation", "first call", "median", "runs", "CPU/wall",
                         "vs transformers", "GFLOP", "GFLOP/s", "% of matmul", "max |Δ logits| vs transformers"],
                        rows), ""]
        rows = [[f"{c['model']} b{c['batch']} L{c['source_length']}", fmt_ratio(c["pt_vs_transformers"]),
                 verdict(c["pt_vs_transformers"], TARGETS["forward_pt"])] for c in fwd.get("cases", [])]
        lines += [table(["case", "encdec PT / transformers", f"<= {TARGETS['forward_pt']}x met?"], rows), ""]

    gen = results.get("generate")
    if gen is not None:
        lines += ["## Generation", "",
                  "MiniLM bert2bert, `generate(input_ids, attention_mask, max_length, num_beams, do_sample=False)`, "
                  "input length as given, no eos token: every implementation generates `max_length - 1` tokens. "
                  "\"first call\" includes compilation (TF XLA, Flax jit); \"compile\" is first call minus the warm "
                  "median. \"2nd call compiled?\" is yes when public counters moved during the second call "
                  "(Flax: JAX's `jax.monitoring` backend-compile and trace events), or when the second call spent "
                  "more than half of the first call's compile time over the warm median and took over 1.5x that "
                  "median (TF keeps its compiled generation functions to itself, and XLA's per-shape cache inside "
                  "a TF function has no public counter); the ratio of the second call to the warm median is shown "
                  "next to it.", ""]
        rows = []
        for c in gen.get("cases", []):
            case = f"{c['mode']} b{c['batch']} in{c['input_length']} max{c['max_length']}"
            for name, rec in c["impls"].items():
                if not rec.get("available"):
                    rows.append([case, name, rec.get("reason"), "", "", "", "", "", "", "", ""])
                    continue
                comp = rec.get("second_call_compiled")
                rows.append([
                    case, name, fmt_time(rec["first_s"]),
                    fmt_time(rec["compile_s"]) if name in (TF_XLA, FLAX) else "",
                    fmt_time(rec["median_s"]), rec["runs"], _cpu(rec),
                    "1.00x" if name == HF else fmt_ratio(ratio(c["impls"], name, HF)),
                    fmt_ratio(ratio(c["impls"], name, PT)) if name != PT else "1.00x",
                    {True: "yes", False: "no", None: "—"}[rec.get("same_ids_as_transformers")] if name != HF else "",
                    "" if comp is None else (("YES" if comp else "no") + f" ({rec['second_over_median']:.2f}x)"),
                ])
        lines += [table(["case", "implementation", "first call", "compile", "warm median", "runs", "CPU/wall", "vs transformers",
                         "vs encdec PT", "same ids", "2nd call compiled? (2nd / median)"], rows), ""]
        keys = ["encdec PT / transformers", "encdec Flax jit / encdec PT", "encdec TF XLA / encdec PT",
                "encdec TF XLA / encdec TF eager"]
        limits = [TARGETS["generate_pt"], TARGETS["generate_compiled_vs_pt"], TARGETS["generate_compiled_vs_pt"],
                  TARGETS["tf_xla_vs_eager"]]
        rows = []
        for c in gen.get("cases", []):
            row = [f"{c['mode']} b{c['batch']} max{c['max_length']}"]
            for key, limit in zip(keys, limits):
                value = c["ratios"][key]
                row.append(f"{fmt_ratio(value)} {'' if value is None else ('✓' if value <= limit else '✗')}")
            rows.append(row)
        lines += [table(["case"] + [f"{k} (<= {l}x)" for k, l in zip(keys, limits)], rows), ""]

    conv = results.get("convert")
    if conv is not None:
        lines += ["## Checkpoint conversion", ""]
        if conv.get("available"):
            lines += [f"`{conv['command']}`: a bert2bert of {conv['parameters'] / 1e6:.1f}M parameters, safetensors "
                      f"checkpoint {fmt_bytes(conv['checkpoint_bytes'])}; each conversion in a fresh process, peak RSS "
                      f"from its VmHWM. A process that only imports the converter peaks at "
                      f"{fmt_bytes(conv['import_only_rss'])}.", ""]
            hf_row = next((r for r in conv["rows"] if r["what"].startswith("transformers")), None)
            rows = []
            for r in conv["rows"]:
                rows.append([r["what"], fmt_time(r["seconds"]), fmt_bytes(r["peak_rss"]), f"{r['peak_over_size']:.2f}x",
                             "—" if r.get("extra_over_size") is None else f"{r['extra_over_size']:.2f}x",
                             fmt_ratio(r["seconds"] / hf_row["seconds"]) if hf_row else "—",
                             verdict(r["peak_over_size"], TARGETS["convert_peak"]) if r["what"].startswith("encdec") else ""])
            lines += [table(["what", "time", "peak RSS", "peak / size", "(peak − import-only) / size",
                             "time vs transformers load", f"peak <= {TARGETS['convert_peak']}x size?"], rows), "",
                      "The time column is for information, not a target: docs/performance.md asks for conversion faster than "
                      "transformers' `from_pt` loading into TF/Flax, which transformers 5 no longer has; its PyTorch "
                      "`from_pretrained` maps the safetensors file and writes nothing, while a conversion reads, "
                      "converts and writes every tensor.", ""]
        else:
            lines += [f"not available: {conv.get('reason')}", ""]

    if results.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: {e}" for k, e in results["errors"].items()] + [""]
    return "\n".join(lines)


def _cpu(rec: dict) -> str:
    value = rec.get("cpu_over_wall_median")
    return "—" if value is None else f"{value:.2f}"


def _limit_text(t: dict) -> str:
    name = t["target"]
    if "FLOP" in name:
        return f">= {100 * t['limit']:.0f}%"
    if "compiles nothing" in name:
        return "0 cases"
    if name.startswith("`import"):
        return f"< {fmt_time(t['limit'])}"
    return f"<= {t['limit']}x"


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}x"


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value: Optional[float], limit: float, higher_is_better: bool = False) -> str:
    """'yes' / 'NO (missed by x%)' / 'n/a' for a measured value against its limit."""
    if value is None:
        return "n/a"
    if (value >= limit) if higher_is_better else (value <= limit):
        return "yes"
    if higher_is_better:
        return f"NO (short by {100 * (limit - value) / limit:.0f}%)"
    return f"NO (over by {100 * (value - limit) / limit:.0f}%)"


def write_report(results: dict, out: Optional[str], json_path: Optional[str]) -> None:
    """Derived numbers (FLOP fractions, targets) recomputed, then the Markdown to `out` and the JSON to
    `json_path`, each written to a temporary file and renamed into place."""
    add_flop_fractions(results)
    results["targets"] = evaluate_targets(results)
    for path, text in ((out, render_markdown(results)), (json_path, json.dumps(results, indent=1) + "\n")):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
