"""Write tests/fixtures/hf/transformers457: what transformers 4.57 itself does where it defined the
behaviour that encdec follows (tying encoder and decoder, config defaults, output flags).

    bash tools/venv457.sh                       # .venv-457: transformers 4.57.6, torch 2.13.0+cpu
    PYTHONPATH=. .venv-457/bin/python tools/make_457_fixtures.py [--out DIR] [--seed 0]

It writes (tests/fixtures/hf/README.md describes each file):

- `tied_bert2bert/`: a tiny bert2bert with `tie_encoder_decoder=True`, saved by 4.57's
  `EncoderDecoderModel.save_pretrained` (`model.safetensors`, `config.json`,
  `generation_config.json`), and `golden.npz`: fixed inputs and the logits 4.57 gives
  for them, from the model in memory and again from the saved folder;
- `tie_halves/encoder`, `tie_halves/decoder`: two different tiny BERT checkpoints (a
  `BertModel`, a `BertLMHeadModel` with cross-attention), and `tie_direction.npz` /
  `tie_direction.json`: what `EncoderDecoderModel.from_encoder_decoder_pretrained(enc,
  dec, tie_encoder_decoder=True)` gives on fixed inputs, and which half's values the
  shared tensors hold;
- `defaults.json`: the generic attributes of 4.57's `PretrainedConfig` and their
  defaults, and `GenerationConfig.from_model_config` of a bert2bert config where only
  `decoder_start_token_id` and `pad_token_id` were set after construction;
- `output_flags.json`: which outputs 4.57's `EncoderDecoderModel` returns when
  `output_attentions` / `output_hidden_states` are set on `config.encoder` /
  `config.decoder` (or the top-level config) and not passed to the call.

Weights are drawn by torch's generator (`--seed`) with `initializer_range` 0.25, then every
bias and LayerNorm weight moved off 0 and 1 by N(0, 0.1), so a swapped or dropped tensor
shows in the logits. A rerun gives the same files on the same torch build. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import tempfile

import numpy as np
import torch
import transformers
from transformers import (
    BertConfig,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GenerationConfig,
    PretrainedConfig,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "hf" / "transformers457"
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, initializer_range=0.25, pad_token_id=0)
# [CLS]-like start, [SEP]-like eos, pad: the ids of the other bert2bert fixtures.
START, EOS, PAD = 2, 3, 0
PERTURBATION = 0.1

# Fixed inputs: row 1 right-padded in the encoder.
INPUT_IDS = np.array([[5, 17, 42, 8, 91, 23, 3], [9, 64, 11, 3, 0, 0, 0]], np.int64)
ATTENTION_MASK = (INPUT_IDS != PAD).astype(np.int64)
DECODER_INPUT_IDS = np.array([[START, 12, 33, 7, 50], [START, 81, 4, 26, 19]], np.int64)

# The generic PretrainedConfig attributes defaults.json records.
GENERIC = ("max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
           "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
           "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
           "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
           "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
           "suppress_tokens", "begin_suppress_tokens", "decoder_start_token_id", "bos_token_id",
           "eos_token_id", "pad_token_id", "sep_token_id", "output_attentions", "output_hidden_states",
           "return_dict", "use_return_dict", "torchscript", "tie_word_embeddings", "tie_encoder_decoder",
           "is_encoder_decoder", "is_decoder", "add_cross_attention", "chunk_size_feed_forward",
           "tokenizer_class", "prefix", "task_specific_params", "problem_type", "cross_attention_hidden_size")


def _perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Move every bias and LayerNorm weight off 0 / 1 (a shared Parameter once)."""
    with torch.no_grad():
        for name, param in model.named_parameters():  # tied Parameters are listed once
            if name.endswith(".bias") or name.endswith("LayerNorm.weight"):
                param.add_(torch.randn(param.shape, generator=generator) * PERTURBATION)


def _inputs() -> dict[str, torch.Tensor]:
    return dict(input_ids=torch.tensor(INPUT_IDS), attention_mask=torch.tensor(ATTENTION_MASK),
                decoder_input_ids=torch.tensor(DECODER_INPUT_IDS))


def _forward(model: EncoderDecoderModel):
    with torch.no_grad():
        return model.eval()(**_inputs())


def _special_ids(model: EncoderDecoderModel) -> None:
    model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id = START, EOS, PAD
    model.generation_config = GenerationConfig(decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD)


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _write_json(path: pathlib.Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _versions() -> dict[str, str]:
    return dict(transformers=transformers.__version__, torch=torch.__version__)


def tied_bert2bert(out: pathlib.Path, seed: int) -> None:
    torch.manual_seed(seed)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**TINY), BertConfig(**TINY, is_decoder=True, add_cross_attention=True), tie_encoder_decoder=True)
    model = EncoderDecoderModel(config=config)
    _perturb(model, torch.Generator().manual_seed(seed + 1))
    _special_ids(model)
    folder = out / "tied_bert2bert"
    model.save_pretrained(folder)
    logits = _forward(model).logits.numpy()
    reloaded = _forward(EncoderDecoderModel.from_pretrained(folder)).logits.numpy()
    if not np.array_equal(logits, reloaded):
        raise SystemExit(f"4.57 does not reproduce its own tied checkpoint: max diff {np.abs(logits - reloaded).max()}")
    np.savez(folder / "golden.npz", input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK,
             decoder_input_ids=DECODER_INPUT_IDS, logits=logits)


def tie_direction(out: pathlib.Path, seed: int) -> None:
    halves = out / "tie_halves"
    torch.manual_seed(seed + 10)
    encoder = BertModel(BertConfig(**TINY))
    _perturb(encoder, torch.Generator().manual_seed(seed + 11))
    encoder.save_pretrained(halves / "encoder")
    torch.manual_seed(seed + 20)
    decoder = BertLMHeadModel(BertConfig(**TINY, is_decoder=True, add_cross_attention=True))
    _perturb(decoder, torch.Generator().manual_seed(seed + 21))
    decoder.save_pretrained(halves / "decoder")

    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        str(halves / "encoder"), str(halves / "decoder"), tie_encoder_decoder=True)
    _special_ids(model)
    result = _forward(model)
    np.savez(out / "tie_direction.npz", input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK,
             decoder_input_ids=DECODER_INPUT_IDS, logits=result.logits.numpy(),
             encoder_last_hidden_state=result.encoder_last_hidden_state.numpy())
    # Which half the shared tensors came from: compare with both saved halves.
    enc_sd, dec_sd, joined = encoder.state_dict(), decoder.state_dict(), model.state_dict()
    probe = "embeddings.word_embeddings.weight"
    _write_json(out / "tie_direction.json", dict(
        versions=_versions(),
        call="EncoderDecoderModel.from_encoder_decoder_pretrained(tie_halves/encoder, tie_halves/decoder, "
             "tie_encoder_decoder=True)",
        special_ids=dict(decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=PAD),
        probe=probe,
        encoder_probe_equals_encoder_half=bool(torch.equal(joined["encoder." + probe], enc_sd[probe])),
        encoder_probe_equals_decoder_half=bool(torch.equal(joined["encoder." + probe], dec_sd["bert." + probe])),
        pooler_equals_encoder_half=bool(torch.equal(joined["encoder.pooler.dense.weight"],
                                                    enc_sd["pooler.dense.weight"])),
    ))


def defaults(out: pathlib.Path) -> None:
    plain = PretrainedConfig()
    generic = {name: _jsonable(getattr(plain, name, "<absent>")) for name in GENERIC}
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**TINY), BertConfig(**TINY, is_decoder=True, add_cross_attention=True))
    # As transformers' EncoderDecoderModel page does: set only these after construction.
    config.decoder_start_token_id = START
    config.pad_token_id = PAD
    from_model = GenerationConfig.from_model_config(config)
    global_defaults = getattr(PretrainedConfig, "_get_global_generation_defaults", None)
    _write_json(out / "defaults.json", dict(
        versions=_versions(),
        pretrained_config=generic,
        global_generation_defaults=_jsonable(global_defaults()) if global_defaults else None,
        generation_config_defaults=_jsonable(GenerationConfig().to_dict()),
        from_model_config=dict(
            set_after_construction=dict(decoder_start_token_id=START, pad_token_id=PAD),
            to_diff_dict=_jsonable(from_model.to_diff_dict()),
            values={k: _jsonable(getattr(from_model, k)) for k in (
                "decoder_start_token_id", "pad_token_id", "bos_token_id", "eos_token_id", "max_length",
                "min_length", "num_beams", "do_sample", "early_stopping", "length_penalty",
                "no_repeat_ngram_size", "repetition_penalty")},
        ),
    ))


# (name, attributes set on config.encoder, on config.decoder, on the top-level config)
FLAG_SCENARIOS = [
    ("none", {}, {}, {}),
    ("encoder_attentions", {"output_attentions": True}, {}, {}),
    ("decoder_attentions", {}, {"output_attentions": True}, {}),
    ("encoder_hidden_states", {"output_hidden_states": True}, {}, {}),
    ("decoder_hidden_states", {}, {"output_hidden_states": True}, {}),
    ("both_attentions", {"output_attentions": True}, {"output_attentions": True}, {}),
    ("top_level_both", {}, {}, {"output_attentions": True, "output_hidden_states": True}),
]
OUTPUT_FIELDS = ("encoder_attentions", "encoder_hidden_states", "decoder_attentions", "decoder_hidden_states",
                 "cross_attentions")


def _eager_model(how: str, saved: pathlib.Path) -> EncoderDecoderModel:
    """A tiny bert2bert with eager attention (4.57 refuses output_attentions on a config that uses SDPA).

    "joined": the halves built eager, then joined; "from_pretrained": the joined model saved, then
    loaded by `EncoderDecoderModel.from_pretrained(..., attn_implementation="eager")`, as users load one.
    """
    if how == "from_pretrained":
        return EncoderDecoderModel.from_pretrained(saved, attn_implementation="eager")
    encoder = BertModel._from_config(BertConfig(**TINY), attn_implementation="eager")
    decoder = BertLMHeadModel._from_config(BertConfig(**TINY, is_decoder=True, add_cross_attention=True),
                                           attn_implementation="eager")
    return EncoderDecoderModel(encoder=encoder, decoder=decoder)


def output_flags(out: pathlib.Path, seed: int) -> None:
    scenarios: dict[str, dict] = {"joined": {}, "from_pretrained": {}}
    with tempfile.TemporaryDirectory() as tmp:
        saved = pathlib.Path(tmp)
        torch.manual_seed(seed)
        _eager_model("joined", saved).save_pretrained(saved)
        for how in scenarios:
            for name, enc_attrs, dec_attrs, top_attrs in FLAG_SCENARIOS:
                model = _eager_model(how, saved)
                _special_ids(model)
                scenario = dict(encoder=enc_attrs, decoder=dec_attrs, top_level=top_attrs)
                try:
                    for target, attrs in ((model.config.encoder, enc_attrs), (model.config.decoder, dec_attrs),
                                          (model.config, top_attrs)):
                        for key, value in attrs.items():
                            setattr(target, key, value)
                except ValueError as e:
                    # The joined config keeps SDPA: 4.57 refuses the flag there (recorded, not worked around).
                    scenarios[how][name] = dict(scenario, refused=str(e))
                    continue
                result = _forward(model)
                # None, or how many tensors the tuple holds
                scenario["outputs"] = {f: None if getattr(result, f) is None else len(getattr(result, f))
                                       for f in OUTPUT_FIELDS}
                # Whether the decoder's inner BertModel reads the config object that model.config.decoder is.
                scenario["decoder_body_reads_config_decoder"] = model.decoder.bert.config is model.config.decoder
                scenarios[how][name] = scenario
    _write_json(out / "output_flags.json", dict(
        versions=_versions(),
        how="attributes set on model.config.encoder / .decoder / model.config after construction; "
            "model(input_ids, attention_mask, decoder_input_ids) with no output_* argument; each output is "
            "null when None, else the length of its tuple (2 layers: 2 attentions, 3 hidden states). "
            "Two constructions: the halves joined, and the joined model saved and loaded by from_pretrained",
        scenarios=scenarios,
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not transformers.__version__.startswith("4.57."):
        raise SystemExit(f"transformers {transformers.__version__} found; expected 4.57.x (see tools/venv457.sh)")
    # Written beside the destination, then moved in whole: a failed run leaves the old folder.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".transformers457-", dir=args.out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private
    try:
        tied_bert2bert(tmp, args.seed)
        tie_direction(tmp, args.seed)
        defaults(tmp)
        output_flags(tmp, args.seed)
        if args.out.exists():
            shutil.rmtree(args.out)
        tmp.rename(args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
