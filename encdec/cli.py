"""The `encdec` command: convert | inspect | conformance | generate | export.

A subcommand is a function that adds its parser to the subparsers and sets
`func` on it; `func(args)` returns the exit code. Register one with
`@subcommand` in this module, or name it in `LAZY_SUBCOMMANDS` as
"module:function" so that its module is imported only when the parser is
built (its import must stay framework-free).

A failure prints one line, `encdec: error: ...`, without a traceback (unless
`--debug`), and exits with one of the codes of `EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Callable

from .errors import EncdecError

EXIT_OK = 0
EXIT_PROBLEMS = 1  # `inspect` found a problem; or an unexpected internal error
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_BAD_INPUT = 3  # a checkpoint or config that cannot be read or does not fit (any encdec error)
EXIT_IO = 4  # the operating system refused: disk full, permission denied, ...
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PROBLEMS: "inspect found a problem (a format that does not match the config, non-finite weights), "
    "or an unexpected internal error",
    EXIT_USAGE: "bad command line",
    EXIT_BAD_INPUT: "a checkpoint or config that is missing, corrupt, hostile or does not match",
    EXIT_IO: "an I/O error: disk full, permission denied, ...",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

Register = Callable[["argparse._SubParsersAction"], argparse.ArgumentParser]
SUBCOMMANDS: dict[str, Register] = {}
# name -> "module:function" whose function registers the subcommand (same signature as Register).
LAZY_SUBCOMMANDS: dict[str, str] = {
    "conformance": "encdec.conformance.cli:register",
    "generate": "encdec.cli_generate:register",
    "export": "encdec.export.cli:register",
}


def subcommand(name: str) -> Callable[[Register], Register]:
    def decorate(register: Register) -> Register:
        SUBCOMMANDS[name] = register
        return register

    return decorate


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="encdec",
        description="Encoder-decoder models in PyTorch, TensorFlow and Flax: checkpoints, conversion, conformance.",
        epilog="exit codes:\n" + "\n".join(f"  {code:<4} {what}" for code, what in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"encdec {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in SUBCOMMANDS.values():
        register(sub)
    for name, target in LAZY_SUBCOMMANDS.items():
        if name in SUBCOMMANDS:
            continue
        module, _, func = target.partition(":")
        getattr(importlib.import_module(module), func)(sub)
    return parser


def _fail(args: argparse.Namespace, code: int, message: str) -> int:
    if getattr(args, "debug", False):
        traceback.print_exc()
    print(f"encdec: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EncdecError as e:
        return _fail(args, EXIT_BAD_INPUT, " ".join(str(e).split("\n")))
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _fail(args, EXIT_IO, f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        print("encdec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback with --debug
        hint = "" if args.debug else " (run with --debug for the traceback)"
        return _fail(args, EXIT_PROBLEMS, f"internal error: {type(e).__name__}: {e}{hint}")


# ---------------------------------------------------------------------------
# convert


@subcommand("convert")
def _add_convert(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .weights.formats import FORMATS

    p = sub.add_parser(
        "convert",
        help="convert a checkpoint folder to another format (no framework needed)",
        description="Convert an encoder-decoder checkpoint folder (any of the four formats) to FORMAT. "
        "The target folder is written to a temporary sibling and swapped in. Files already there that are "
        "not weights (a tokenizer) are kept; weight files of another checkpoint there are removed, and "
        "listed. The output keeps the tensor names the source holds.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint folder to read")
    p.add_argument("dst", metavar="DST", help="folder to write (may be SRC)")
    p.add_argument("--to", required=True, choices=FORMATS, help="target format")
    p.add_argument("--from", dest="src_fmt", choices=FORMATS, help="source format, when SRC holds several")
    p.add_argument("--shard-size", metavar="SIZE", help="largest shard, e.g. 5GB or 500MB (default: one file)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), help="cast the weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_convert)
    return p


def cmd_convert(args: argparse.Namespace) -> int:
    from .weights.convert import convert_checkpoint

    report = convert_checkpoint(
        args.src,
        args.dst,
        args.to,
        shard_size=args.shard_size,
        dtype=args.dtype,
        progress=not args.quiet and sys.stderr.isatty(),
        src_fmt=args.src_fmt,
    )
    if not args.quiet:
        source = report.source
        print(
            f"converted {len(source.used)} tensors: {', '.join(os.path.basename(f) for f in source.files)} "
            f"({source.format}) -> {', '.join(report.files)} ({report.format}) in {report.directory}"
        )
        for name, reason in source.ignored:
            print(f"  ignored {name}: {reason}")
        if report.removed:
            print(f"removed the weights of the checkpoint {report.directory} held before: {', '.join(report.removed)}")
        for line in report.recovered:
            print(line)
    return 0


# ---------------------------------------------------------------------------
# inspect


@subcommand("inspect")
def _add_inspect(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "inspect",
        help="describe a checkpoint folder and check every format in it against its config",
        description="Print the architecture, parameter count, the formats present with their sizes, and for "
        "each format the tensors missing, unexpected or of the wrong shape, and those holding NaN or "
        "infinite values (every tensor is read). Exit code 1 when a format does not match the config "
        "or holds non-finite values.",
    )
    p.add_argument("dir", metavar="DIR", help="checkpoint folder")
    p.set_defaults(func=cmd_inspect)
    return p


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _arch_line(cfg) -> str:
    return (
        f"{cfg.model_type}: hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
        f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size}, positions {cfg.max_position_embeddings}"
    )


def _finite(array) -> bool:
    import numpy as np

    return bool(np.isfinite(array).all())


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .config import CONFIG_NAME, DECODER_ONLY_TYPES, EncoderDecoderConfig, arch_config_from_dict, read_json
    from .weights import names
    from .weights.convert import check_component, check_config_fits, check_state
    from .weights.formats import formats_present, is_floating, open_checkpoint
    from .weights.io import recover_directory

    # Piped output (logs, CI) gets a wide fixed width, so table cells are not wrapped mid-word.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    directory = args.dir
    for line in recover_directory(directory):
        console.print(line, markup=False)
    if not os.path.isdir(directory):
        raise EncdecError(f"{directory}: not a folder; expected a checkpoint folder")
    config_path = os.path.join(directory, CONFIG_NAME)
    data = read_json(config_path)
    present = formats_present(directory)
    try:
        config = (
            EncoderDecoderConfig.from_dict(data)
            if data.get("model_type") == EncoderDecoderConfig.model_type
            else arch_config_from_dict(data)
        )
    except EncdecError as e:
        raise EncdecError(f"{config_path}: {e}") from None
    # The layer count is bounded by the tensors the files hold before any parameter table is built.
    for fmt in present:
        try:
            reader = open_checkpoint(directory, fmt)
        except EncdecError:
            continue  # reported as unreadable below
        with reader:
            check_config_fits(reader, config)
    if isinstance(config, EncoderDecoderConfig):
        specs = {"model": names.model_spec(config)}
        console.print(f"[bold]{directory}[/bold]: encoder-decoder")
        console.print(f"  encoder  {_arch_line(config.encoder)}")
        console.print(f"  decoder  {_arch_line(config.decoder)}")
        flags = [
            f"enc_to_dec_proj {config.encoder.hidden_size}->{config.decoder.hidden_size}"
            if config.needs_projection
            else None,
            "tie_encoder_decoder" if config.tie_encoder_decoder else None,
            "LM head tied to embeddings" if config.decoder.tie_word_embeddings else "untied LM head",
        ]
        console.print("  " + ", ".join(f for f in flags if f))
    else:
        arch = config
        console.print(f"[bold]{directory}[/bold]: a single {_arch_line(arch)}")
        specs = {}
        if arch.model_type not in DECODER_ONLY_TYPES:
            specs["as encoder"] = ("encoder", arch)
        # As a decoder it gains cross-attention, which a standalone checkpoint cannot hold.
        specs["as decoder"] = ("decoder", arch)

    from .tokenization import describe_tokenizer

    console.print(f"  tokenizer: {describe_tokenizer(directory) or 'none'}", markup=False)
    first = specs["model"] if "model" in specs else names.encoder_spec(arch) if arch.model_type not in DECODER_ONLY_TYPES \
        else names.decoder_spec(arch)
    console.print(
        f"  parameters: {first.num_parameters():,} stored, {len(first.params)} tensors"
        + (f" (+{len(first.tied)} tied)" if first.tied else "")
    )
    if not present:
        console.print("  [red]no weights found[/red]")
        return 1

    table = Table(show_header=True, header_style="bold")
    for column in ("format", "files", "size", "tensors", "dtypes", "check"):
        table.add_column(column)
    problems = False
    details = []
    for fmt in present:
        try:
            reader = open_checkpoint(directory, fmt)
        except EncdecError as e:
            table.add_row(fmt, "", "", "", "", "[red]unreadable[/red]")
            details.append(f"{fmt}: {e}")
            problems = True
            continue
        with reader:
            size = sum(os.path.getsize(f) for f in reader.files)
            dtypes = sorted({str(reader.info(n).dtype) for n in reader.names()})
            verdicts = []
            for label, spec in specs.items():
                match = check_component(reader, spec[1], spec[0]) if isinstance(spec, tuple) else check_state(reader, spec)
                issues = []
                if match.missing:
                    issues.append(f"{len(match.missing)} missing")
                    details.append(f"{fmt} {label}: missing " + ", ".join(match.missing[:8]))
                if match.unexpected:
                    issues.append(f"{len(match.unexpected)} unexpected")
                    details.append(f"{fmt} {label}: unexpected " + ", ".join(match.unexpected[:8]))
                if match.mismatched:
                    issues.append(f"{len(match.mismatched)} wrong shape")
                    details.extend(
                        f"{fmt} {label}: {n} has shape {list(got)}, expected {list(want)}"
                        for n, got, want in match.mismatched[:8]
                    )
                if match.not_float:
                    issues.append(f"{len(match.not_float)} not floating-point")
                prefix = "" if label == "model" else f"{label}: "
                verdicts.append(prefix + (", ".join(issues) if issues else "ok"))
                if label == "model" and issues:
                    problems = True
            try:
                non_finite = [
                    name for name in reader.names()
                    if is_floating(reader.info(name).dtype) and not _finite(reader.read(name))
                ]
            except EncdecError as e:
                non_finite = []
                problems = True
                verdicts.append("unreadable tensor")
                details.append(f"{fmt}: {e}")
            if non_finite:
                problems = True
                verdicts.append(f"{len(non_finite)} non-finite")
                details.append(f"{fmt}: NaN or infinite values in " + ", ".join(non_finite))
            check = "; ".join(verdicts)
            style = "green" if all(v.endswith("ok") for v in verdicts) else "yellow"
            table.add_row(
                fmt,
                ", ".join(os.path.basename(f) for f in reader.files),
                _human(size),
                str(len(reader)),
                ", ".join(dtypes),
                f"[{style}]{check}[/{style}]",
            )
    console.print(table)
    for line in details:
        console.print(f"  {line}", markup=False)
    return 1 if problems else 0
