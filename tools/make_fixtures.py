"""Regenerate tests/fixtures/hf: tiny encoder-decoder checkpoints written by transformers 4.57's own classes.

    python tools/make_fixtures.py [--out tests/fixtures/hf] [--cases bert2bert,xlmr2xlmr] [--seed 0]

Each case folder gets what tests/fixtures/hf/README.md describes:

- `model.safetensors` and `pytorch_model.bin` from `EncoderDecoderModel.save_pretrained`
  (the second with `safe_serialization=False`), `config.json` and
  `generation_config.json` as transformers writes them;
- `tf_model.h5` from `TFEncoderDecoderModel.from_pretrained(..., from_pt=True).save_pretrained`
  and `flax_model.msgpack` from `FlaxEncoderDecoderModel`, where transformers 4.57 has
  the TF / Flax class for both halves (`CASES[...].formats`; `README.json` ->
  `formats_not_written` says why one is missing);
- `golden.npz`: the inputs and what the PyTorch model gave (float32, CPU): a forward
  without decoder mask (logits, encoder output, every decoder hidden state), a forward
  from labels (loss, logits), and four generation settings;
- `README.json`: the special ids, the files, the versions, and how far the TF / Flax
  classes' logits are from PyTorch's, both in memory and reloaded from the written file.

Weights: transformers' own initialisation with `initializer_range` (BART: `init_std`)
0.25, then every bias and every norm weight moved off 0 and 1 by N(0, 0.1) noise, so
that a dropped bias, a swapped gamma/beta or a missing transpose shows in the outputs.
One rule for every case: norms spelled `LayerNorm`, `layer_norm`, `layernorm` and
GPT-2's `ln_*` (the committed bert2bert ... bert2bert_proj cases left the
`layer_norm` / `layernorm` spellings at 1 / 0; regenerated, they are perturbed too).

It is not run in CI, and it cannot run in the project's own environment: it needs
transformers 4.57 (the last line with the TF and Flax classes) with torch, tensorflow
plus tf-keras (transformers' TF classes need Keras 2) and jax/flax, for example

    pip install 'transformers==4.57.6' torch 'tensorflow-cpu==2.20.*' 'tf-keras==2.20.*' jax flax

The weights are drawn anew (torch's generator, `--seed`), so a regenerated folder is
not byte-identical to the committed one; the tests compare encdec with the folder's
own golden outputs, so they hold either way. The committed folders' README.json keys
`transformers5_check` were made by loading the written files with transformers 5
in a separate environment; this script does not write them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
from typing import Any, Callable

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "hf"
TRANSFORMERS_VERSION = "4.57"

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, initializer_range=0.25)
# Noise added to every bias and norm weight (see the module docstring).
PERTURBATION = 0.1
NORM_WEIGHT = re.compile(r"(LayerNorm|layer_norm|layernorm|ln_\w+)\.weight$")

# golden.npz: 3 rows; encoder rows 1 and 2 right-padded; label row 1 shorter (-100 after it).
ENCODER_LENGTHS = (11, 8, 5)
LABEL_LENGTHS = (7, 5, 7)
GENERATIONS = {
    "greedy": dict(max_length=12, num_beams=1),
    "beam3": dict(max_length=12, num_beams=3, early_stopping=True),
    "beam3_ret2_lp2": dict(max_length=12, num_beams=3, num_return_sequences=2, length_penalty=2.0,
                           early_stopping=False),
    "greedy_noeos_len16": dict(max_length=16, num_beams=1, eos_token_id=None),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One fixture: the two halves' configs, the joined model's special ids, the formats written."""

    name: str
    encoder: Callable[[], Any]  # () -> a transformers config
    decoder: Callable[[], Any]
    start: int
    pad: int
    eos: int
    formats: tuple[str, ...]  # of "tf", "flax"; PyTorch's two files are always written
    not_written: dict[str, str] = dataclasses.field(default_factory=dict)
    # The TF class names the XLM-R main layer "roberta" but looks for "xlm-roberta" when
    # loading PyTorch weights; the public `tf_to_pt_weight_rename` argument corrects it.
    tf_rename: Callable[[str], str] | None = None


def _bert(**over):
    from transformers import BertConfig

    return BertConfig(**{**TINY, **over})


def _roberta(**over):
    from transformers import RobertaConfig

    return RobertaConfig(**{**TINY, "max_position_embeddings": 66, **over})


def _xlmr(**over):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(**{**TINY, "max_position_embeddings": 66, **over})


def _bertgen(**over):
    from transformers import BertGenerationConfig

    return BertGenerationConfig(**{**TINY, **over})


def _gpt2(**over):
    from transformers import GPT2Config

    return GPT2Config(**{**dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                initializer_range=0.25, bos_token_id=98, eos_token_id=98), **over})


def _bart(d_model=32, **over):
    from transformers import BartConfig

    return BartConfig(**{**dict(vocab_size=99, d_model=d_model, encoder_layers=2, decoder_layers=2,
                                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                                decoder_ffn_dim=37, max_position_embeddings=64, init_std=0.25,
                                activation_function="gelu", forced_eos_token_id=None), **over})


def _electra(**over):
    from transformers import ElectraConfig

    return ElectraConfig(**{**TINY, "embedding_size": 16, **over})


def _rembert(**over):
    from transformers import RemBertConfig

    return RemBertConfig(**{**TINY, "input_embedding_size": 16, "output_embedding_size": 24, "bos_token_id": 2,
                            "eos_token_id": 3, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                            **over})


def _xlmr_tf_rename(name: str) -> str:
    return name.replace("xlm-roberta", "roberta")


NO_TF_BART = "transformers 4.57.6: no TF causal-LM class for decoder model_type 'bart'"
CASES = {c.name: c for c in (
    Case("bert2bert", _bert, _bert, start=2, pad=0, eos=3, formats=("tf", "flax")),
    Case("bert2gpt2", _bert, _gpt2, start=98, pad=0, eos=98, formats=("tf", "flax")),
    Case("roberta2roberta", _roberta, _roberta, start=0, pad=1, eos=2, formats=("tf", "flax")),
    Case("bertgen2bertgen", _bertgen, _bertgen, start=2, pad=0, eos=1, formats=(),
         not_written={"tf": "transformers has no TF BertGeneration",
                      "flax": "transformers has no Flax BertGeneration"}),
    Case("bert2bert_proj", _bert, lambda: _bert(hidden_size=48, num_attention_heads=6), start=2, pad=0, eos=3,
         formats=("tf", "flax")),
    Case("bert2bart", _bert, _bart, start=2, pad=1, eos=2, formats=("flax",), not_written={"tf": NO_TF_BART}),
    # The decoder config carries initializer_range only because transformers' Flax
    # EncoderDecoderModel reads it to build enc_to_dec_proj (PyTorch uses init_std).
    Case("bert2bart_proj", _bert, lambda: _bart(d_model=24, initializer_range=0.25), start=0, pad=1, eos=2,
         formats=("flax",), not_written={"tf": NO_TF_BART}),
    Case("electra2electra", _electra, _electra, start=2, pad=0, eos=3, formats=(),
         not_written={"tf": "transformers 4.57.6: no TFElectraForCausalLM",
                      "flax": "transformers 4.57.6: FlaxEncoderDecoderModel cannot run Flax ELECTRA in either half"}),
    Case("xlmr2xlmr", _xlmr, _xlmr, start=0, pad=1, eos=2, formats=("tf", "flax"), tf_rename=_xlmr_tf_rename),
    Case("rembert2rembert", _rembert, _rembert, start=2, pad=0, eos=3, formats=("tf",),
         not_written={"flax": "transformers has no Flax RemBERT"}),
)}


# ---------------------------------------------------------------------------


def build_model(case: Case, seed: int):
    """The joined PyTorch model: transformers' initialisation, then biases and norm weights perturbed."""
    import torch
    from transformers import EncoderDecoderConfig, EncoderDecoderModel

    config = EncoderDecoderConfig.from_encoder_decoder_configs(case.encoder(), case.decoder())
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = case.start, case.pad, case.eos
    torch.manual_seed(seed)
    model = EncoderDecoderModel(config=config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias") or NORM_WEIGHT.search(name):
                param.add_(torch.randn(param.shape, generator=generator) * PERTURBATION)
    model.generation_config.decoder_start_token_id = case.start
    model.generation_config.pad_token_id = case.pad
    model.generation_config.eos_token_id = case.eos
    return model


def golden_inputs(case: Case, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Encoder ids right-padded with the pad id, labels with -100 after each row's length,
    decoder ids = labels shifted right behind the start token (-100 -> pad)."""
    rng = np.random.default_rng(seed)
    free = np.array([i for i in range(vocab) if i not in {case.start, case.pad, case.eos}])
    enc_len, dec_len = max(ENCODER_LENGTHS), max(LABEL_LENGTHS)
    input_ids = np.full((3, enc_len), case.pad, np.int64)
    attention_mask = np.zeros((3, enc_len), np.int64)
    labels = np.full((3, dec_len), -100, np.int64)
    for row, (n, m) in enumerate(zip(ENCODER_LENGTHS, LABEL_LENGTHS)):
        input_ids[row, :n] = rng.choice(free, n)
        attention_mask[row, :n] = 1
        labels[row, :m] = rng.choice(free, m)
    decoder_input_ids = np.empty_like(labels)
    decoder_input_ids[:, 0] = case.start
    decoder_input_ids[:, 1:] = labels[:, :-1]
    decoder_input_ids[decoder_input_ids == -100] = case.pad
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                decoder_input_ids=decoder_input_ids)


def golden_outputs(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    t = {k: torch.as_tensor(v) for k, v in inputs.items()}
    out = {}
    with torch.no_grad():
        plain = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                      decoder_input_ids=t["decoder_input_ids"], output_hidden_states=True)
        out["logits"] = plain.logits.numpy()
        out["encoder_last_hidden_state"] = plain.encoder_last_hidden_state.numpy()
        for i, h in enumerate(plain.decoder_hidden_states):
            out[f"decoder_hidden_states_{i}"] = h.numpy()
        pad = model.config.pad_token_id
        from_labels = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], labels=t["labels"],
                            decoder_attention_mask=(t["decoder_input_ids"] != pad).long())
        out["loss"] = from_labels.loss.numpy()
        out["logits_from_labels"] = from_labels.logits.numpy()
        for name, options in GENERATIONS.items():
            ids = model.generate(t["input_ids"], attention_mask=t["attention_mask"], do_sample=False, **options)
            out[name] = ids.numpy()
    return out


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max())


def write_tf(case: Case, folder: pathlib.Path, inputs, reference: np.ndarray, info: dict) -> None:
    from transformers import TFEncoderDecoderModel

    options = {"tf_to_pt_weight_rename": case.tf_rename} if case.tf_rename else {}
    model = TFEncoderDecoderModel.from_pretrained(folder, from_pt=True, **options)
    feed = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                decoder_input_ids=inputs["decoder_input_ids"])
    info["hf_tf_vs_hf_pt_logits_maxdiff"] = _max_diff(model(**feed).logits, reference)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "tf_model.h5"), folder / "tf_model.h5")
    again = TFEncoderDecoderModel.from_pretrained(folder)  # the written file alone
    info["hf_tf_reload_vs_hf_pt_logits_maxdiff"] = _max_diff(again(**feed).logits, reference)


def write_flax(case: Case, folder: pathlib.Path, inputs, reference: np.ndarray, info: dict) -> None:
    from transformers import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel.from_pretrained(folder, from_pt=True)
    feed = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                decoder_input_ids=inputs["decoder_input_ids"])
    info["hf_flax_vs_hf_pt_logits_maxdiff"] = _max_diff(model(**feed).logits, reference)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "flax_model.msgpack"), folder / "flax_model.msgpack")
    again = FlaxEncoderDecoderModel.from_pretrained(folder)
    info["hf_flax_reload_vs_hf_pt_logits_maxdiff"] = _max_diff(again(**feed).logits, reference)


def versions() -> dict[str, str]:
    found = {}
    for module in ("transformers", "torch", "tensorflow", "tf_keras", "jax", "flax"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            pass
    return found


def make_case(case: Case, out: pathlib.Path, seed: int) -> dict:
    import transformers

    folder = out / case.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model = build_model(case, seed)
    model.save_pretrained(folder)  # config.json, generation_config.json, model.safetensors
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=False)
        shutil.copy(os.path.join(tmp, "pytorch_model.bin"), folder / "pytorch_model.bin")
    inputs = golden_inputs(case, model.config.decoder.vocab_size, seed)
    outputs = golden_outputs(model, inputs)
    np.savez(folder / "golden.npz", **inputs, **outputs)

    info = {
        "case": case.name,
        "made_by": f"transformers {transformers.__version__}",
        "frameworks_saved": ["pt", *case.formats],
        "decoder_start_token_id": case.start,
        "pad_token_id": case.pad,
        "eos_token_id": case.eos,
    }
    writers = {"tf": write_tf, "flax": write_flax}
    for fmt in case.formats:
        writers[fmt](case, folder, inputs, outputs["logits"], info)
    info["encoder"] = f"{type(model.encoder).__name__} ({model.config.encoder.model_type})"
    info["decoder"] = f"{type(model.decoder).__name__} ({model.config.decoder.model_type})"
    info["versions"] = versions()
    if case.not_written:
        info["formats_not_written"] = dict(case.not_written)
    info["files"] = sorted(p.name for p in folder.iterdir())  # README.json itself left out
    with open(folder / "README.json", "w") as f:
        json.dump(info, f, indent=1)
    # A TF or Flax file whose logits are far from PyTorch's holds other weights: stop here.
    # (Flax RoBERTa-family positions are transformers' own defect: README.md explains it.)
    for key, value in info.items():
        if key.endswith("_logits_maxdiff") and value > 1e-4 and not (
                "flax" in key and case.decoder().model_type in ("roberta", "xlm-roberta")):
            raise SystemExit(f"{case.name}: {key} = {value:.3g}; expected <= 1e-4 (the written weights differ)")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated; default: every case")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import transformers

    if not transformers.__version__.startswith(TRANSFORMERS_VERSION + "."):
        print(f"make_fixtures: transformers {transformers.__version__} is installed; expected "
              f"{TRANSFORMERS_VERSION}.x (the last line with TF and Flax classes)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"make_fixtures: unknown case(s) {unknown}; expected some of {', '.join(CASES)}", file=sys.stderr)
        return 2
    order = list(CASES)
    for name in names:
        # Each case its own seed, so that one case regenerated alone gets the same weights.
        info = make_case(CASES[name], args.out, args.seed + 100 * order.index(name))
        print(f"{name}: {', '.join(info['files'])}")
    print(f"written under {args.out}; update its README.md if a case or a key changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
