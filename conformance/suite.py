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
from .runners import PORTS, REFERENCE, Runner, runner_class
from .tolerances import activation_bound

# Outputs one side may return and the other not, without failing the check.
# Every Seq2SeqLMOutput field is required of every runner, so none is today
# (caches are not compared at all: see runners.NOT_COMPARED).
OPTIONAL_OUTPUTS: tuple[str, ...] = ()
GOLDEN = "golden"


class SuiteError(Exception):
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


def select_models(model_dir: str | None, matrix: str, patterns: Sequence[str] | None) -> list[cases_mod.ModelCase]:
    models = [cases_mod.directory_case(model_dir, matrix)] if model_dir else cases_mod.builtin_cases(matrix)
    if patterns:
        models = [m for m in models if any(fnmatch.fnmatchcase(m.name, p) for p in patterns)]
        if not models:
            raise SuiteError(f"no model case matches {list(patterns)}")
    return models


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


class _Progress:
    """rich progress when asked for; a no-op otherwise."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled:
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
        if self.bar:
            self.bar.update(self.task, description=description, advance=advance)


def run_suite(
    model_dir: str | None = None,
    *,
    frameworks: Sequence[str] | None = None,
    devices: Sequence[str] = ("cpu",),
    dtypes: Sequence[str] = ("float32",),
    cases: str = "quick",
    reference: bool = True,
    models: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
    workdir: str | None = None,
    progress: bool = False,
    time_limit: float | None = None,
) -> Report:
    """Run the suite and return its Report (see report.py).

    `model_dir`: a checkpoint folder (any format the core reads); None runs the
    built-in cases. `frameworks`: runner names (pt, tf, flax, hf); None means
    every port that can run here. `reference`: add transformers when installed.
    `models`: glob patterns selecting model cases by name. `items`: glob
    patterns selecting what runs ("forward/*", "gradients/*", "generate/*").
    `time_limit`: seconds after which no further model case is started; the
    cases left are listed as skipped and the report is incomplete (exit status 3).
    """
    started = time.time()
    runner_classes, skips = resolve_frameworks(frameworks, reference)
    runs, device_skips = plan_runs(runner_classes, devices, dtypes)
    skips += device_skips
    model_cases = select_models(model_dir, cases, models)
    report = Report(
        runs=runs, skips=skips,
        meta=dict(model_dir=model_dir, cases=cases, frameworks=[c.name for c in runner_classes],
                  devices=list(devices), dtypes=list(dtypes), models=[m.name for m in model_cases]),
    )
    wanted = (lambda item: True) if not items else (lambda item: any(fnmatch.fnmatchcase(item, p) for p in items))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="encdec-conformance-"))
        with _Progress(progress, len(model_cases) * max(1, len(runs))) as bar:
            for case in model_cases:
                if time_limit is not None and time.time() - started > time_limit:
                    report.skips.append(Skip("*", "*", None, f"time limit: case {case.name} not run "
                                                              f"({time_limit:.0f} s reached)"))
                    report.incomplete = True
                    continue
                _run_case(case, runs, report, os.path.join(workdir, _safe(case.name)), wanted, bar)
    report.meta["seconds"] = round(time.time() - started, 1)
    return report


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
    plan = [(item, what) for item, what in plan if wanted(item)]

    results: dict[Run, dict[str, Any]] = {}
    converted: dict[str, str] = {}
    executed = report.executed.setdefault(case.name, {})
    for run in runs:
        bar.step(f"{case.name} · {run.framework} on {run.device} ({run.dtype})")
        results[run] = _execute(run, case, config, src, inputs, plan, converted, workdir, report)
        executed[run.key] = {item: sorted(out) if isinstance(out, dict) else ["ids"]
                             for item, out in results[run].items()}
        report.generated.setdefault(case.name, {})[run.key] = {
            item: np.asarray(out).tolist() for item, out in results[run].items() if item.startswith("generate/")}
        bar.step(f"{case.name} · {run.framework} on {run.device} ({run.dtype})", advance=1)
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
        return out
    finally:
        seconds["load"] = round(time.perf_counter() - start, 3)
    try:
        for item, what in plan:
            kind = item.split("/")[0]
            if kind == "gradients" and run.dtype != "float32":
                continue  # the table bounds gradients in float32 only
            start = time.perf_counter()
            try:
                if kind == "forward":
                    out[item] = runner.forward(inputs[what])
                elif kind == "gradients":
                    out[item] = runner.gradients(inputs[what])
                else:
                    gen_inputs = inputs[case.input_names()[0]]
                    out[item] = runner.generate(gen_inputs, what.kwargs(config))
            except Exception as e:
                report.add([_error(dict(ctx, item=item), item.split("/")[0], e)])
            seconds[item] = round(time.perf_counter() - start, 3)
    finally:
        runner.close()
    return out


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
        try:
            _compare_item(item, a[item], b[item], ctx, config, real, inputs, order, report)
        except Exception as e:  # an output the comparison cannot read is a failure, not a crash
            report.add([_error(ctx, "compare", e)])


def _compare_item(item, a, b, ctx, config, real: bool, inputs, order, report: Report) -> None:
    kind, _, what = item.partition("/")
    if kind == "forward":
        mask = inputs[what].get("decoder_attention_mask") if what in inputs else None
        report.add(compare_outputs(a, b, ctx, real=real, optional=OPTIONAL_OUTPUTS, logits_mask=mask))
        diag = diagnose_layers(a, b, ctx, activation_bound(ctx["dtype"], real))
        if diag is not None:
            report.diagnoses.append(diag)
    elif kind == "gradients":
        report.add(compare_gradients(a, b, ctx, order))
    else:
        report.add([compare_generated(a, b, ctx, pad=config.pad_token_id)])
