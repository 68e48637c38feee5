"""`encdec export DIR OUT --to onnx|savedmodel|jax`: the command line of `encdec.export`."""

from __future__ import annotations

import argparse

from . import DTYPES, KINDS

# flag -> (generate option, type); given only when set, checked against the kind's options
GENERATION_FLAGS = {
    "--num-beams": ("num_beams", int),
    "--max-new-tokens": ("max_new_tokens", int),
    "--max-length": ("max_length", int),
    "--min-length": ("min_length", int),
    "--length-penalty": ("length_penalty", float),
    "--num-return-sequences": ("num_return_sequences", int),
}


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a model folder for deployment: ONNX with a decoder cache, TF SavedModel, JAX",
        description="Export the model folder DIR to OUT. OUT also gets the config, the generation config, "
        "the tokenizer files and export.json. OUT is written to a temporary sibling and renamed into "
        "place; an existing OUT is refused unless --overwrite. Generation options fix the exported "
        "generate function (savedmodel, jax); an ONNX export takes them when it runs.",
    )
    p.add_argument("dir", metavar="DIR", help="model folder (what save_pretrained writes)")
    p.add_argument("out", metavar="OUT", help="export folder to write")
    p.add_argument("--to", required=True, choices=tuple(KINDS), help="export kind")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the exported weights and compute")
    p.add_argument("--opset", type=int, help="ONNX opset (onnx only; default: the exporter's)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it exists")
    for flag, (option, kind) in GENERATION_FLAGS.items():
        p.add_argument(flag, dest=option, type=kind, help=f"generate's {option}, fixed in the export")
    p.add_argument("--early-stopping", dest="early_stopping", action="store_true", default=None,
                   help="generate's early_stopping=True, fixed in the export")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    from . import export

    options = [option for option, _ in GENERATION_FLAGS.values()] + ["early_stopping"]
    generation = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    out = export(args.dir, args.out, to=args.to, dtype=args.dtype, opset=args.opset, overwrite=args.overwrite,
                 generation=generation)
    print(f"exported {args.dir} -> {out} ({args.to}, {args.dtype})")
    return 0
