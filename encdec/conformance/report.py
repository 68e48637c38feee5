"""The suite's report: every comparison made, in a rich table, JSON, Markdown and a PNG.

JSON holds every comparison (case, item, frameworks pair, device, dtype,
output, metric, value, tolerance, pass), the runs made, the devices skipped
and why, and the per-layer diagnosis of every forward pair. A failure names
the output that disagrees and, for a forward pass, the first layer (encoder
layers, then decoder layers) whose output disagrees.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Iterable

from .compare import Comparison, LayerDiagnosis, describe_layer

SCHEMA_VERSION = 1


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1e-2 and abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _pair(frameworks: Iterable[str]) -> str:
    return " vs ".join(f for f in frameworks if f != "-")


def _skip_lines(skips) -> list[str]:
    """The skips as text, one line each, except that the frameworks that all lack one
    device class share one line (a CPU-only machine: "gpu for pt, tf, ...: absent")."""
    absent: dict[str, list] = collections.OrderedDict()
    for s in skips:
        if s.reason.startswith("absent: ") and s.dtype is None:
            absent.setdefault(s.device, []).append(s)
    lines = []
    for s in skips:
        group = absent.get(s.device) if s.reason.startswith("absent: ") and s.dtype is None else None
        if group is None or len(group) == 1:
            lines.append(_skip_line(s))
        elif group[0] is s:
            libraries = ", ".join(dict.fromkeys(g.reason.split()[1] for g in group))
            lines.append(f"{s.device} for {', '.join(g.framework for g in group)}: absent ({libraries} see no "
                         f"{s.device.upper()})")
    return lines


def _skip_line(s) -> str:
    """A skip as text: "<framework> on <device> (<dtype>): <reason>", or the reason
    alone when it concerns no one framework and device (framework and device "*")."""
    if s.framework == "*" and s.device == "*":
        return s.reason
    return f"{s.framework} on {s.device}" + (f" ({s.dtype})" if s.dtype else "") + f": {s.reason}"


class Report:
    def __init__(self, runs=(), skips=(), meta: dict | None = None) -> None:
        self.runs = list(runs)
        self.skips = list(skips)
        self.meta = dict(meta or {})
        self.comparisons: list[Comparison] = []
        self.diagnoses: list[LayerDiagnosis] = []
        self.cases: dict[str, dict[str, Any]] = {}
        self.incomplete = False  # a time limit left model cases unrun (listed in skips)
        # case -> run key -> item -> the output (or parameter) names that run returned
        self.executed: dict[str, dict[str, dict[str, list[str]]]] = {}
        # case -> run key -> generate item -> the generated ids (rows of token ids);
        # text item -> the decoded strings
        self.generated: dict[str, dict[str, dict[str, list]]] = {}
        # case -> run key -> "load" or item -> seconds (compilation included)
        self.timings: dict[str, dict[str, dict[str, float]]] = {}

    def add(self, comparisons: Iterable[Comparison]) -> None:
        self.comparisons.extend(comparisons)

    # --- verdict -----------------------------------------------------------

    @property
    def failed(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    @property
    def compared(self) -> int:
        """Comparisons between two sides (errors excluded)."""
        return sum(1 for c in self.comparisons if c.metric != "error")

    @property
    def passed(self) -> bool:
        """No comparison failed, no step raised, and at least one comparison was made."""
        return not self.failed and self.compared > 0

    @property
    def exit_status(self) -> int:
        """1: something disagrees or raised; 2: nothing was compared; 3: no
        disagreement, but a time limit left cases unrun; 0: everything agrees."""
        if self.failed:
            return 1
        if not self.compared:
            return 2
        return 3 if self.incomplete else 0

    def _diagnosis(self, c: Comparison) -> LayerDiagnosis | None:
        for d in self.diagnoses:
            if (d.case, d.item, tuple(d.frameworks), d.device, d.dtype) == (c.case, c.item, tuple(c.frameworks),
                                                                            c.device, c.dtype):
                return d
        return None

    def groups(self) -> dict[tuple, list[Comparison]]:
        """Comparisons by (case, item, frameworks, device, dtype), in the order made."""
        out: dict[tuple, list[Comparison]] = collections.OrderedDict()
        for c in self.comparisons:
            out.setdefault((c.case, c.item, tuple(c.frameworks), c.device, c.dtype), []).append(c)
        return out

    def failure_lines(self) -> list[str]:
        """One line per group with a failure: what disagrees, by how much, and where it starts."""
        lines = []
        for (case, item, fws, device, dtype), comps in self.groups().items():
            bad = [c for c in comps if not c.passed]
            if not bad:
                continue
            head = f"{case} {item} [{_pair(fws)} on {device}, {dtype}]"
            if bad[0].metric == "error":
                lines.append(f"{head}: {bad[0].output} raised {bad[0].note}")
                continue
            shown = []
            for c in bad[:4]:
                if c.value is None:
                    shown.append(f"{c.output}: {c.note}")
                else:
                    op = ">=" if c.metric == "top1_agreement" else "<="
                    text = f"{c.output} {c.metric}={_fmt(c.value)} (expected {op} {_fmt(c.tolerance)})"
                    shown.append(text + (f"; {c.note}" if c.note else ""))
            more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
            line = f"{head}: {len(bad)} of {len(comps)} checks disagree: " + "; ".join(shown) + more
            diag = self._diagnosis(bad[0])
            if diag is not None and diag.first_bad:
                per_layer = ", ".join(f"{n}={_fmt(v)}" for n, v in diag.layers)
                line += (f". First disagreeing layer: {diag.first_bad} ({describe_layer(diag.first_bad)}); "
                         f"max abs diff per layer: {per_layer}")
            elif diag is not None and item.startswith("forward/"):
                line += ". Every layer's hidden state agrees"
            lines.append(line)
        return lines

    def failure_text(self) -> str:
        if self.compared == 0 and not self.failed:
            return "no comparison was made: " + (self.skip_text() or "nothing ran")
        return "\n".join(self.failure_lines())

    def skip_text(self) -> str:
        return "; ".join(_skip_line(s) for s in self.skips)

    # --- JSON ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        devices_run: dict[str, list[str]] = {}
        for r in self.runs:
            devices_run.setdefault(r.framework, [])
            if r.device not in devices_run[r.framework]:
                devices_run[r.framework].append(r.device)
        return {
            "schema_version": SCHEMA_VERSION,
            "passed": self.passed,
            "exit_status": self.exit_status,
            "incomplete": self.incomplete,
            "summary": {
                "comparisons": len(self.comparisons),
                "failed": len(self.failed),
                "errors": sum(1 for c in self.comparisons if c.metric == "error"),
            },
            "meta": self.meta,
            "runs": [dict(framework=r.framework, device=r.device, device_name=r.device_name, dtype=r.dtype)
                     for r in self.runs],
            "devices_run": devices_run,
            "skipped": [s.to_json() for s in self.skips],
            "cases": self.cases,
            "executed": self.executed,
            "generated": self.generated,
            "timings": self.timings,
            "failures": self.failure_lines(),
            "comparisons": [c.to_json() for c in self.comparisons],
            "layer_diagnoses": [d.to_json() for d in self.diagnoses],
        }

    def write_json(self, path: str) -> str:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        return path

    # --- tables --------------------------------------------------------------

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per (case, frameworks, device, dtype): checks and failures per kind of item."""
        rows: dict[tuple, dict[str, Any]] = collections.OrderedDict()
        for c in self.comparisons:
            key = (c.case, _pair(c.frameworks), c.device, c.dtype)
            row = rows.setdefault(key, dict(case=c.case, frameworks=key[1], device=c.device, dtype=c.dtype,
                                            forward=[0, 0], gradients=[0, 0], generate=[0, 0], text=[0, 0],
                                            errors=0,
                                            first_failure=None, first_bad=None))
            if c.metric == "error":
                row["errors"] += 1
            else:
                kind = c.item.split("/")[0]
                row[kind][0] += 1
                row[kind][1] += 0 if c.passed else 1
            if not c.passed and row["first_failure"] is None:
                row["first_failure"] = f"{c.item} {c.output}"
                diag = self._diagnosis(c)
                if diag is not None and diag.first_bad:
                    row["first_bad"] = diag.first_bad
        return list(rows.values())

    @staticmethod
    def _cells(row: dict[str, Any], text: bool = False) -> list[str]:
        def cell(counts):
            n, bad = counts
            return "-" if n == 0 else (f"{bad}/{n} failed" if bad else f"{n} ok")

        bad = row["errors"] + sum(row[k][1] for k in ("forward", "gradients", "generate", "text"))
        if bad:
            result = f"FAIL: {row['first_failure']}"
            if row["first_bad"]:
                result += f" (first bad layer {row['first_bad']})"
        else:
            result = "pass"
        counts = [cell(row[k]) for k in ("forward", "gradients", "generate")] + ([cell(row["text"])] if text else [])
        return [row["case"], row["frameworks"], row["device"], row["dtype"], *counts, str(row["errors"] or "-"), result]

    COLUMNS = ("case", "frameworks", "device", "dtype", "forward", "gradients", "generate", "errors", "result")

    def _has_text(self) -> bool:
        """Whether a text item was checked: its column is shown only then."""
        return any(c.item.startswith("text/") for c in self.comparisons)

    def columns(self) -> tuple[str, ...]:
        """The table's columns: COLUMNS, with "text" after "generate" when a text item was checked."""
        if not self._has_text():
            return self.COLUMNS
        at = self.COLUMNS.index("generate") + 1
        return self.COLUMNS[:at] + ("text",) + self.COLUMNS[at:]

    def print(self, console=None) -> None:
        """The summary table, the skips, and one line per failure, in the terminal."""
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:  # rich is a dependency; keep the verdict readable without it
            print(self.to_markdown())
            return
        import sys

        if console is None:
            # A log file or CI console is no terminal: give the table room instead of 80 columns.
            console = Console() if sys.stdout.isatty() else Console(width=240)
        table = Table(title="encdec conformance")
        for col in self.columns():
            table.add_column(col, overflow="fold")
        for row in self.summary_rows():
            cells = self._cells(row, self._has_text())
            style = None if cells[-1] == "pass" else "red"
            table.add_row(*cells, style=style)
        console.print(table)
        from rich.text import Text

        for line in _skip_lines(self.skips):
            console.print(Text("skipped ", style="yellow") + Text(line), soft_wrap=True)
        ran = sorted({f"{r.framework}@{r.device}/{r.dtype}" for r in self.runs})
        console.print(f"ran: {', '.join(ran) or 'nothing'}")
        for line in self.failure_lines():
            console.print(Text("FAIL ", style="red") + Text(line), soft_wrap=True)
        verdict = "[green]PASS[/green]" if self.passed else "[red]FAIL[/red]"
        console.print(f"{verdict}: {len(self.comparisons)} checks, {len(self.failed)} failed"
                      + ("" if self.compared else " (no comparison was made)")
                      + (" (incomplete: the time limit left cases unrun)" if self.incomplete else ""))

    def to_markdown(self) -> str:
        lines = ["# encdec conformance report", ""]
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"**{verdict}**: {len(self.comparisons)} checks, {len(self.failed)} failed."
                     + (" Incomplete: the time limit left cases unrun (see Skipped)." if self.incomplete else ""))
        lines.append("")
        lines.append("Runs: " + (", ".join(f"{r.framework} on {r.device} ({r.dtype})" for r in self.runs) or "none"))
        lines.append("")
        if self.skips:
            lines.append("Skipped:")
            lines.append("")
            lines += [f"- {line}" for line in _skip_lines(self.skips)]
            lines.append("")
        lines.append("| " + " | ".join(self.columns()) + " |")
        lines.append("|" + "---|" * len(self.columns()))
        for row in self.summary_rows():
            lines.append("| " + " | ".join(c.replace("|", "/") for c in self._cells(row, self._has_text())) + " |")
        failures = self.failure_lines()
        if failures:
            lines += ["", "## Failures", ""] + [f"- {f}" for f in failures]
        lines.append("")
        return "\n".join(lines)

    def write_markdown(self, path: str) -> str:
        with open(path, "w") as f:
            f.write(self.to_markdown())
        return path

    # --- plot ----------------------------------------------------------------

    def write_plot(self, path: str) -> str | None:
        """Per-layer max abs diff, one panel per case, one line per framework pair
        (float32, the case's first forward item). None when matplotlib is absent."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        panels: dict[str, list[LayerDiagnosis]] = collections.OrderedDict()
        first_item: dict[str, str] = {}
        for d in self.diagnoses:
            if d.dtype != "float32" or not d.item.startswith("forward/"):
                continue
            item = first_item.setdefault(d.case, d.item)
            if d.item == item:
                panels.setdefault(d.case, []).append(d)
        n = max(1, len(panels))
        cols = min(4, n)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (case, diags) in zip(axes.flat, panels.items()):
            names = []
            for d in diags:
                for name, _ in d.layers:
                    if name not in names:
                        names.append(name)
            x = {name: i for i, name in enumerate(names)}
            for d in diags:
                xs = [x[name] for name, _ in d.layers]
                ys = [max(v, 1e-12) for _, v in d.layers]
                label = _pair(d.frameworks) + ("" if d.device == "cpu" else f" ({d.device})")
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
            bound = next((d.bound for d in diags if d.bound), None)
            if bound:
                ax.axhline(bound, color="red", linestyle="--", linewidth=1)
            ax.set_yscale("log")
            ax.set_title(f"{case} · {first_item[case]}", fontsize=8)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels([_short(n) for n in names], rotation=90, fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            ax.legend(fontsize=5)
        fig.suptitle("max abs diff per layer (red: fp32 bound)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    # --- all at once ---------------------------------------------------------

    def write(self, target: str) -> dict[str, str]:
        """Write JSON, Markdown and PNG. `target` ending in .json names the JSON
        file (the others beside it, same stem); otherwise it is a folder."""
        if target.endswith(".json"):
            stem = target[: -len(".json")]
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        else:
            os.makedirs(target, exist_ok=True)
            stem = os.path.join(target, "conformance")
        written = {"json": self.write_json(stem + ".json"), "markdown": self.write_markdown(stem + ".md")}
        png = self.write_plot(stem + ".png")
        if png:
            written["png"] = png
        return written


def _short(name: str) -> str:
    return (name.replace("encoder_hidden_states.", "enc.").replace("decoder_hidden_states.", "dec.")
            .replace("encoder_last_hidden_state", "enc.out"))
