"""Run the case matrix on every framework and device, and compare every pair.

For each model case: write (or locate) its canonical checkpoint, convert it
through the core to each runner's native format, load it in each runner on
each device and dtype, run the forward inputs, the gradient step and the
generation settings, then compare every pair of runs of the same dtype (and
every float32 run against transformers' golden outputs where a case has them).
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import itertools
import os
import tempfile
import time
import traceback
from typing import Any, Callable, Sequence

import numpy as np

from encdec.config import EncoderDecoderConfig
from encdec.errors import EncdecError
from encdec.tokenization import Tokenizer
from encdec.weights.names import model_spec

from . import cases as cases_mod
from .compare import (
    Comparison,
    compare_generated,
    compare_gradients,
    compare_outputs,
    diagnose_layers,
)
from .devices import Run, Skip, plan_runs
from .report import Report
from .runners import PORTS, REFERENCE, NotRunnable, Runner, runner_class
from .tolerances import activation_bound

# Outputs one side may return and the other not, without failing the check.
# Every Seq2SeqLMOutput field is required of every runner, so none is today
# (caches are not compared at all: see runners.NOT_COMPARED).
OPTIONAL_OUTPUTS: tuple[str, ...] = ()
GOLDEN = "golden"


class SuiteError(EncdecError):
    """The suite cannot start: an unknown option, or a framework asked for that is absent."""


def resolve_frameworks(frameworks: Sequence[str] | None, reference: bool) -> tuple[list[type[Runner]], list[Skip]]:
    """The runner classes to use, and a Skip for each default one that cannot run.

    A framework named explicitly that cannot run is an error; one only implied
    by the default is skipped with its reason.
    """
    explicit = frameworks is not None
    names = list(frameworks) if explicit else list(PORTS)
    if reference and REFERENCE not in names:
        names.append(REFERENCE)
    classes, skips = [], []
    for name in names:
        cls = runner_class(name)
        reason = cls.unavailable()
        if reason is None:
            classes.append(cls)
        elif explicit and name in frameworks:
            raise SuiteError(f"framework {name!r} ({cls.label}) was asked for but cannot run: {reason}")
        else:
            skips.append(Skip(name, "*", None, f"unavailable: {reason}"))
    return classes, skips


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_models(model_dir: str | None, matrix: str, patterns: Sequence[str] | None,
                  fixtures_dir: str | None = None) -> list[cases_mod.ModelCase]:
    if model_dir:
        models = [cases_mod.directory_case(model_dir, matrix)]
    else:
        models = cases_mod.builtin_cases(matrix, fixtures_dir)
    models = [m for m in models if _matches(m.name, patterns)]
    if not models:
        missing = [n for n in cases_mod.missing_fixtures(matrix, fixtures_dir) if _matches(n, patterns)]
        hint = ""
        if missing:
            hint = f" (the fixture cases {missing} need a fixtures folder: {_fixtures_hint(fixtures_dir)})"
        raise SuiteError(f"no model case of the {matrix!r} case set matches {list(patterns or [])}{hint}")
    return models


def _fixtures_hint(fixtures_dir: str | None) -> str:
    if fixtures_dir is not None:
        return f"{fixtures_dir} lacks them"
    return "none was given and this is no source checkout with tests/fixtures/hf; pass --fixtures DIR"


def prepare_checkpoint(src: str, fmt: str, workdir: str) -> str:
    """The checkpoint at `src` in format `fmt`, converted through the core into `workdir`."""
    from encdec.weights.convert import convert_checkpoint

    dst = os.path.join(workdir, fmt)
    if not os.path.isdir(dst):
        convert_checkpoint(src, dst, to=fmt, progress=False)
    return dst


def _error(ctx: dict, what: str, exc: BaseException) -> Comparison:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {os.path.basename(last.filename)}:{last.lineno})" if last else ""
    return Comparison(**ctx, output=what, metric="error", value=None, tolerance=None, passed=False,
                      note=f"{type(exc).__name__}: {exc}{where}")


PROGRESS_MODES = ("bar", "lines", "none")


class _Progress:
    """How the suite shows its progress: "bar" (a rich progress bar, for a
    terminal), "lines" (one plain line per run and per model case as each
    finishes, for a log file or a pipe) or "none"."""

    def __init__(self, mode: str, total: int, started: float) -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {mode!r}; expected one of {', '.join(PROGRESS_MODES)}")
        self.mode, self.total, self.started, self.done = mode, total, started, 0
        self.bar = None
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]conformance[/bold] {task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn())
            self.task = self.bar.add_task("", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def step(self, description: str, advance: int = 0) -> None:
        self.done += advance
        if self.bar:
            self.bar.update(self.task, description=description, advance=advance)

    def line(self, text: str) -> None:
        if self.mode == "lines":
            print(f"[{time.time() - self.started:5.0f} s] {text}", flush=True)

    def start(self, text: str) -> None:
        """What the run checks, said once before it starts (with a bar or lines)."""
        if self.mode != "none":
            print(text, flush=True)

    def run_done(self, case: str, run: Run, seconds: dict[str, float], errors: int) -> None:
        items = sum(1 for k in seconds if k != "load")
        self.line(f"{case}: {run.framework} on {run.device} ({run.dtype}) ran {items} items in "
                  f"{sum(seconds.values()):.1f} s" + (f", {errors} raised" if errors else ""))

    def case_done(self, case: str, report: Report) -> None:
        mine = [c for c in report.comparisons if c.case == case]
        bad = [c for c in mine if not c.passed]
        verdict = f"FAIL ({len(bad)} of {len(mine)} checks)" if bad else f"pass ({len(mine)} checks)"
        self.line(f"{case}: {verdict} [{self.done}/{self.total} runs done]")


def run_suite(
    model_dir: str | None = None,
    *,
    frameworks: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu",),
    dtypes: Sequence[str] = ("float32",),
    cases: str = "default",
    reference: bool = True,
    models: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
    workdir: str | None = None,
    progress: bool | str = False,
    time_limit: float | None = None,
    fixtures_dir: str | None = None,
) -> Report:
    """Run the suite and return its Report (see report.py).

    `model_dir`: a checkpoint folder (any format the core reads); None runs the
    built-in cases of the case set `cases` ("default": the default model alone,
    "quick", "full"; see cases.py). `frameworks`: runner names (pt, tf, flax, hf); None means
    every port that can run here. `reference`: add transformers when installed.
    `models`: glob patterns selecting model cases by name. `items`: glob
    patterns selecting what runs ("forward/*", "gradients/*", "generate/*").
    `time_limit`: seconds after which no further model case is started; the
    cases left are listed as skipped and the report is incomplete (exit status 3).
    `fixtures_dir`: the folder of transformers' fixture checkpoints ("quick" and
    "full"); default: tests/fixtures/hf of a source checkout. Fixture cases it
    lacks are listed as skipped. `progress`: "bar", "lines" or "none" (True is
    "bar", False "none").
    """
    started = time.time()
    mode = {True: "bar", False: "none", None: "none"}.get(progress, progress)
    runner_classes, skips = resolve_frameworks(frameworks, reference)
    runs, device_skips = plan_runs(runner_classes, devices, dtypes)
    skips += device_skips
    model_cases = select_models(model_dir, cases, models, fixtures_dir)
    if model_dir is None:
        missing = [n for n in cases_mod.missing_fixtures(cases, fixtures_dir) if _matches(n, models)]
        if missing:
            skips.append(Skip("*", "*", None, f"fixture cases not run: {', '.join(missing)}: no fixture "
                                              f"checkpoints found ({_fixtures_hint(fixtures_dir)})"))
    report = Report(
        runs=runs, skips=skips,
        meta=dict(model_dir=model_dir, cases=cases, frameworks=[c.name for c in runner_classes],
                  devices=list(devices), dtypes=list(dtypes), models=[m.name for m in model_cases],
                  fixtures_dir=str(fixtures_dir or cases_mod.default_fixtures_dir() or "") or None),
    )
    wanted = (lambda item: True) if not items else (lambda item: any(fnmatch.fnmatchcase(item, p) for p in items))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="encdec-conformance-"))
        bar = _Progress(mode, len(model_cases) * max(1, len(runs)), started)
        bar.start(_plan_text(model_dir, cases, model_cases, runs))
        with bar:
            for case in model_cases:
                if time_limit is not None and time.time() - started > time_limit:
                    report.skips.append(Skip("*", "*", None, f"time limit: case {case.name} not run "
                                                              f"({time_limit:.0f} s reached)"))
                    report.incomplete = True
                    continue
                _run_case(case, runs, report, os.path.join(workdir, _safe(case.name)), wanted, bar)
                bar.case_done(case.name, report)
    report.meta["seconds"] = round(time.time() - started, 1)
    return report


def _plan_text(model_dir: str | None, matrix: str, model_cases: list, runs: list[Run]) -> str:
    """One line: which model cases run, on which runs."""
    if model_dir:
        what = f"the checkpoint {model_dir}"
    elif matrix == "default":
        case = model_cases[0]
        what = f"the built-in default model, {case.name}: {case.description} (--cases quick or full check more)"
    else:
        what = f"{len(model_cases)} model cases of the {matrix!r} case set"
    where = ", ".join(f"{r.framework} on {r.device} ({r.dtype})" for r in runs) or "no run"
    return f"encdec conformance: {what}. Runs: {where}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _run_case(case: cases_mod.ModelCase, runs: list[Run], report: Report, workdir: str,
              wanted: Callable[[str], bool], bar: _Progress) -> None:
    os.makedirs(workdir, exist_ok=True)
    base_ctx = dict(case=case.name, frameworks=("-", "-"), device="-", dtype="-")
    try:
        src = case.make(workdir)
        config = EncoderDecoderConfig.from_pretrained(src)
    except Exception as e:
        report.add([_error(dict(base_ctx, item="checkpoint"), "checkpoint", e)])
        bar.step(case.name, advance=len(runs))
        return
    spec = model_spec(config)
    real = case.real if case.real is not None else spec.num_parameters() > cases_mod.REAL_MODEL_MIN_PARAMS
    report.cases[case.name] = dict(description=case.description, checkpoint=src, real=real,
                                   parameters=spec.num_parameters(), parameters_stored=len(spec.params),
                                   encoder=config.encoder.model_type, decoder=config.decoder.model_type,
                                   decoder_start_token_id=config.decoder_start_token_id,
                                   eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id)
    inputs = _case_inputs(case, config)
    plan = [("forward/" + n, n) for n in inputs]
    if case.grad_input:
        plan.append(("gradients/" + case.grad_input, case.grad_input))
    plan += [("generate/" + g.name, g) for g in case.generations]
    plan += [("text/" + t.name, t) for t in case.texts]
    plan = [(item, what) for item, what in plan if wanted(item)]

    results: dict[Run, dict[str, Any]] = {}
    converted: dict[str, str] = {}
    executed = report.executed.setdefault(case.name, {})
    for run in runs:
        bar.step(f"{case.name} · {run.framework} on {run.device} ({run.dtype})")
        results[run] = _execute(run, case, config, src, inputs, plan, converted, workdir, report)
        executed[run.key] = {item: sorted(out) if isinstance(out, dict)
                             else ["text" if item.startswith("text/") else "ids"]
                             for item, out in results[run].items()}
        report.generated.setdefault(case.name, {})[run.key] = {
            item: np.asarray(out).tolist() for item, out in results[run].items()
            if item.startswith(("generate/", "text/"))}
        bar.step(f"{case.name} · {run.framework} on {run.device} ({run.dtype})", advance=1)
        errors = sum(1 for c in report.comparisons
                     if c.metric == "error" and c.case == case.name and c.frameworks == (run.framework, "-")
                     and c.device == run.device and c.dtype == run.dtype)
        bar.run_done(case.name, run, report.timings[case.name][run.key], errors)
        if real:
            # A real checkpoint's weights may sit in reference cycles (Keras layers);
            # free them before the next framework loads its copy. (A full collection
            # costs ~0.4 s once three frameworks are imported: not worth it for tiny ones.)
            gc.collect()

    order = [p.name for p in spec]
    for a, b in itertools.combinations(runs, 2):
        if a.dtype == b.dtype:
            _compare_runs(case, config, real, inputs, (a, results[a]), (b, results[b]), order, report)
    if case.golden:
        # transformers 4.57's recorded outputs: a float32 run that has only some
        # outputs, so each run is compared on the outputs the golden file holds.
        golden = cases_mod.golden_outputs(case.golden)
        g_run = Run(GOLDEN, "cpu", "cpu", "float32")
        for run in runs:
            if run.dtype != "float32":
                continue
            mine = {item: _restrict(results[run][item], golden[item]) for item in golden if item in results[run]}
            theirs = {item: golden[item] for item in mine}
            _compare_runs(case, config, real, inputs, (g_run, theirs), (run, mine), order, report)


def _restrict(out: Any, reference: Any) -> Any:
    if isinstance(out, dict) and isinstance(reference, dict):
        return {k: v for k, v in out.items() if k in reference}
    return out


def _case_inputs(case: cases_mod.ModelCase, config: EncoderDecoderConfig) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for inp in case.inputs:
        if isinstance(inp, str):
            out[inp] = cases_mod.golden_inputs(case.golden, inp, config.pad_token_id)
        else:
            out[inp.name] = cases_mod.make_inputs(inp, config)
    return out


def _execute(run: Run, case, config, src: str, inputs, plan, converted: dict, workdir: str,
             report: Report) -> dict[str, Any]:
    """Everything `plan` asks of one run; a failing step becomes an error record."""
    ctx = dict(case=case.name, frameworks=(run.framework, "-"), device=run.device, dtype=run.dtype)
    cls = runner_class(run.framework)
    runner = cls(run)
    out: dict[str, Any] = {}
    seconds = report.timings.setdefault(case.name, {}).setdefault(run.key, {})
    start = time.perf_counter()
    try:
        fmt = cls.native_format
        if fmt not in converted:
            converted[fmt] = prepare_checkpoint(src, fmt, workdir)
        runner.load(converted[fmt])
    except Exception as e:
        report.add([_error(dict(ctx, item="load"), "load", e)])
        runner.close()
        return out
    finally:
        seconds["load"] = round(time.perf_counter() - start, 3)
    try:
        for item, what in plan:
            kind = item.split("/")[0]
            if kind == "gradients" and run.dtype != "float32":
                continue  # the table bounds gradients in float32 only
            if kind not in cls.items:
                _skip(report, run, f"{case.name} {item}: {cls.label} runs no {kind} items")
                continue
            start = time.perf_counter()
            try:
                if kind == "forward":
                    out[item] = runner.forward(inputs[what])
                elif kind == "gradients":
                    out[item] = runner.gradients(inputs[what])
                elif kind == "text":
                    # The checkpoint folder's tokenizer encodes; the runner decodes (transformers' own for hf).
                    ids = runner.generate(what.encode(Tokenizer.from_pretrained(src)), what.generation.kwargs(config))
                    out[item] = runner.decode(ids, src)
                else:
                    gen_inputs = inputs[case.input_names()[0]]
                    out[item] = runner.generate(gen_inputs, what.kwargs(config))
            except NotRunnable as e:
                _skip(report, run, f"{case.name} {item}: {e}")
            except Exception as e:
                report.add([_error(dict(ctx, item=item), item.split("/")[0], e)])
            seconds[item] = round(time.perf_counter() - start, 3)
    finally:
        runner.close()
    return out


def _skip(report: Report, run: Run, reason: str) -> None:
    note = Skip(run.framework, run.device, run.dtype, reason)
    if note not in report.skips:
        report.skips.append(note)


def _forward_outputs(framework: str) -> tuple[str, ...] | None:
    """The forward outputs a runner returns when not every one (exports); None for all of them."""
    try:
        return runner_class(framework).forward_outputs
    except ValueError:  # the golden "run" is not a runner
        return None


def _compare_runs(case, config, real: bool, inputs, left, right, order, report: Report) -> None:
    (ra, a), (rb, b) = left, right
    same_device = ra.device == rb.device
    device = ra.device if same_device else f"{ra.device}|{rb.device}"
    tie_order = {f"generate/{g.name}" for g in case.generations if g.tie_order}
    for item in sorted(set(a) | set(b)):
        if item not in a or item not in b:
            continue  # the missing side already has an error record for this item
        if item in tie_order and REFERENCE in (ra.framework, rb.framework):
            other = rb.framework if ra.framework == REFERENCE else ra.framework
            report.skips.append(Skip(REFERENCE, device, ra.dtype, (
                f"{case.name} {item} not compared with {other}: its ids turn on the order of equal scores, "
                "which torch.topk leaves unspecified (the ports put the lower index first)")))
            continue
        ctx = dict(case=case.name, item=item, frameworks=(ra.framework, rb.framework), device=device, dtype=ra.dtype)
        out_a, out_b = a[item], b[item]
        kind, _, what = item.partition("/")
        for partial in (_forward_outputs(ra.framework), _forward_outputs(rb.framework)):
            if kind == "forward" and partial is not None:
                out_a = {k: v for k, v in out_a.items() if k in partial}
                out_b = {k: v for k, v in out_b.items() if k in partial}
        mask = inputs[what].get("decoder_attention_mask") if kind == "forward" and what in inputs else None
        silent = _silent_queries(inputs, item)
        if silent is not None and REFERENCE in (ra.framework, rb.framework):
            note = Skip(REFERENCE, device, ra.dtype, (
                f"{case.name} {item} compared on the {int((~silent).sum())} decoder positions that attend some "
                f"key, not on the {int(silent.sum())} leading pads that attend none: transformers' softmax over "
                "a row with every key masked spreads it over all keys, the ports give such a query a zero "
                "attention output (they are compared with each other there)"))
            if note not in report.skips:
                report.skips.append(note)
            out_a, out_b, mask = _drop_queries(out_a, silent), _drop_queries(out_b, silent), mask[~silent]
        try:
            _compare_item(item, out_a, out_b, ctx, config, real, mask, order, report)
        except Exception as e:  # an output the comparison cannot read is a failure, not a crash
            report.add([_error(ctx, "compare", e)])


def _silent_queries(inputs, item: str) -> np.ndarray | None:
    """`[B, T]` True where a decoder query may attend no key (a causal query
    before its row's first attended token), for a forward item; None when there is none."""
    kind, _, what = item.partition("/")
    mask = inputs.get(what, {}).get("decoder_attention_mask") if kind == "forward" else None
    if mask is None:
        return None
    silent = np.cumsum(np.asarray(mask), axis=1) == 0
    return silent if silent.any() else None


def _drop_queries(out: dict[str, np.ndarray], silent: np.ndarray) -> dict[str, np.ndarray]:
    """The forward outputs without the decoder positions `silent` marks.

    Per-position outputs `[B, T, ...]` become `[N, ...]` (N kept positions);
    attentions `[B, H, T, K]` become `[N, H, K]`; the rest is unchanged.
    """
    keep = ~silent
    kept = {}
    for name, value in out.items():
        if name == "logits" or name.startswith("decoder_hidden_states."):
            kept[name] = value[keep]
        elif name.startswith(("decoder_attentions.", "cross_attentions.")):
            kept[name] = np.moveaxis(value, 2, 1)[keep]
        else:
            kept[name] = value
    return kept


def _compare_item(item, a, b, ctx, config, real: bool, logits_mask, order, report: Report) -> None:
    kind = item.split("/")[0]
    if kind == "forward":
        report.add(compare_outputs(a, b, ctx, real=real, optional=OPTIONAL_OUTPUTS, logits_mask=logits_mask))
        diag = diagnose_layers(a, b, ctx, activation_bound(ctx["dtype"], real))
        if diag is not None:
            report.diagnoses.append(diag)
    elif kind == "gradients":
        report.add(compare_gradients(a, b, ctx, order))
    elif kind == "text":
        report.add([compare_texts(a, b, ctx)])
    else:
        report.add([compare_generated(a, b, ctx, pad=config.pad_token_id)])


def compare_texts(a: Sequence[str], b: Sequence[str], ctx: dict) -> Comparison:
    """Decoded strings must be identical; the note names the first differing one."""
    fa, fb = ctx["frameworks"]
    if len(a) != len(b):
        return Comparison(**ctx, output="text", metric="count", value=None, tolerance=None, passed=False,
                          note=f"{fa} returned {len(a)} strings, {fb} {len(b)}; expected the same number")
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    note = f"first difference at string {differ[0]}: {fa} {a[differ[0]]!r} vs {fb} {b[differ[0]]!r}" if differ else ""
    return Comparison(**ctx, output="text", metric="strings_differing", value=float(len(differ)), tolerance=0.0,
                      passed=not differ, note=note)
