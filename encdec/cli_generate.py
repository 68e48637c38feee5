"""`encdec generate DIR`: one line of text in, one line of generated text out.

    echo "some text" | encdec generate path/to/model --framework flax --num-beams 4

Lines come from --input FILE, else from standard input, and must be UTF-8. Each
output line is the pipeline's text for the input line (an empty input line gives
an empty output line); with --jsonl, one JSON object per line:
{"input": ..., "output": ..., "token_ids": [...]} (the generated ids, start token
and padding left out). A progress bar goes to standard error when there are more
lines than two batches.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import BinaryIO, Optional, TextIO

from .cli import subcommand
from .errors import InputError

TASKS = ("text2text-generation", "summarization", "translation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="model folder, with its tokenizer")
    p.add_argument("--framework", choices=("pt", "tf", "flax"), default="pt", help="port to run (default: pt)")
    p.add_argument("--task", choices=TASKS, default="text2text-generation", help="pipeline task")
    p.add_argument("--num-beams", type=int, metavar="N", help="beam search with N beams (default: the model's)")
    p.add_argument("--max-length", type=int, metavar="N", help="longest output in tokens (default: the model's)")
    p.add_argument("--batch-size", type=int, metavar="N", default=8, help="lines per batch (default: 8)")
    p.add_argument("--input", metavar="FILE", help="read lines from FILE instead of standard input")
    p.add_argument("--jsonl", action="store_true", help='write {"input", "output", "token_ids"} per line')
    p.add_argument("--device", help="device for the framework (e.g. cuda:0 for pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@subcommand("generate")
def register(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add `generate` to the `encdec` command's subparsers."""
    p = sub.add_parser("generate", help="generate text for each line of the input with a model folder",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def read_lines(stream: BinaryIO, name: str) -> list[str]:
    """The lines of a byte stream as text, line ends removed; InputError at the first line not in UTF-8."""
    lines = []
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{name}: line {number} is not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                "expected UTF-8 text"
            ) from None
        lines.append(text.rstrip("\r\n"))
    return lines


def run(args: argparse.Namespace, stdin: Optional[BinaryIO] = None, stdout: Optional[TextIO] = None) -> int:
    from .pipelines import pipeline

    out = stdout or sys.stdout
    if args.input:
        with open(args.input, "rb") as f:
            lines = read_lines(f, args.input)
    else:
        lines = read_lines(stdin or sys.stdin.buffer, "standard input")
    if not lines:
        raise InputError(f"{args.input or 'standard input'} is empty; expected one line of text per input")
    options = {}
    if args.num_beams is not None:
        options["num_beams"] = args.num_beams
    if args.max_length is not None:
        options["max_length"] = args.max_length
    pipe = pipeline(args.task, model=args.dir, framework=args.framework, device=args.device,
                    batch_size=args.batch_size, **options)
    todo = [i for i, line in enumerate(lines) if line.strip()]
    progress = None
    if not args.quiet and len(todo) > 2 * args.batch_size:
        from tqdm import tqdm

        progress = tqdm(total=len(todo), unit="line", file=sys.stderr)
    results: dict[int, tuple[str, list[int]]] = {}
    done = 0
    try:
        for chunk in pipe.batches(todo):
            for index, outputs in zip(chunk, pipe.run_batch([lines[i] for i in chunk], pipe.generate_kwargs)):
                results[index] = outputs[0]
            # Lines are written in order as soon as every line before them is done.
            while done < len(lines) and (done in results or not lines[done].strip()):
                text, ids = results.pop(done, ("", []))
                if args.jsonl:
                    out.write(json.dumps({"input": lines[done], "output": text, "token_ids": ids},
                                         ensure_ascii=False) + "\n")
                else:
                    out.write(text.replace("\n", " ") + "\n")
                done += 1
            out.flush()
            if progress is not None:
                progress.update(len(chunk))
    finally:
        if progress is not None:
            progress.close()
    while done < len(lines):  # trailing empty lines
        out.write(json.dumps({"input": lines[done], "output": "", "token_ids": []}) + "\n" if args.jsonl else "\n")
        done += 1
    return 0


def main(argv: Optional[list[str]] = None, stdin: Optional[BinaryIO] = None, stdout: Optional[TextIO] = None) -> int:
    """`encdec generate` on its own (errors raise instead of becoming exit codes)."""
    parser = argparse.ArgumentParser(prog="encdec generate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), stdin, stdout)
