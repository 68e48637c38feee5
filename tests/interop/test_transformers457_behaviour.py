"""Where transformers 4.57 defined the behaviour, encdec does what 4.57 did: the generic config
attributes and their defaults, the generation config made from a model config, and which outputs
the sub-configs' output flags bring. The reference is 4.57's own result, written once by
tools/make_457_fixtures.py into tests/fixtures/hf/transformers457/ (defaults.json, output_flags.json).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES
from tiny_models import PAD, joined_config, random_state

from encdec.config import BertConfig, EncoderDecoderConfig, GenerationConfig

REFERENCE = FIXTURES / "transformers457"
DEFAULTS = json.loads((REFERENCE / "defaults.json").read_text())
FLAGS = json.loads((REFERENCE / "output_flags.json").read_text())["scenarios"]["from_pretrained"]
# The generation and output keys encdec's configs read (a 4.57 key encdec has no use for is not compared).
GENERIC = ("max_length", "min_length", "do_sample", "num_beams", "early_stopping", "length_penalty",
           "no_repeat_ngram_size", "repetition_penalty", "decoder_start_token_id", "bos_token_id", "eos_token_id",
           "temperature", "top_k", "top_p", "num_return_sequences", "output_attentions", "output_hidden_states",
           "return_dict", "use_return_dict", "tie_word_embeddings", "is_decoder", "add_cross_attention")
OUTPUTS = ("encoder_attentions", "encoder_hidden_states", "decoder_attentions", "decoder_hidden_states",
           "cross_attentions")


def test_architecture_configs_read_457s_generic_defaults():
    config = BertConfig()
    expected = DEFAULTS["pretrained_config"]
    got = {key: getattr(config, key) for key in GENERIC}
    assert got == {key: expected[key] for key in GENERIC}
    # use_return_dict is 4.57's property `return_dict and not torchscript`, not a stored default.
    config.return_dict = False
    assert config.use_return_dict is False
    config.return_dict, config.torchscript = True, True
    assert config.use_return_dict is False


def test_the_generation_config_of_a_model_config_is_457s():
    source = DEFAULTS["from_model_config"]
    arch = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(arch, arch)
    for key, value in source["set_after_construction"].items():
        setattr(config, key, value)
    generation = GenerationConfig.from_model_config(config)
    got = {key: getattr(generation, key) for key in source["values"]}
    assert got == source["values"]


@pytest.mark.parametrize("scenario", sorted(FLAGS))
@pytest.mark.parametrize("port_name", ["pt", "tf"])
def test_the_sub_configs_output_flags_bring_457s_outputs(port_name, scenario):
    """2 layers on each side: a present output is a tuple of 2 attentions or 3 hidden states."""
    case = FLAGS[scenario]
    config = joined_config("bert2bert", 5)
    config.encoder.num_hidden_layers = config.decoder.num_hidden_layers = 2
    state = random_state(config, 5)
    if port_name == "pt":
        import torch

        from encdec.pt import EncoderDecoderModel

        tensor = torch.from_numpy
    else:
        from encdec.tf import TFEncoderDecoderModel as EncoderDecoderModel

        tensor = np.asarray
    model = EncoderDecoderModel.from_state(config, state)
    for role in ("encoder", "decoder"):
        for key, value in case[role].items():
            setattr(getattr(model.config, role), key, value)
    for key, value in case["top_level"].items():
        setattr(model.config, key, value)
    ids = np.array([[5, 9, 11, 3], [7, 8, 3, PAD]])
    out = model(input_ids=tensor(ids), attention_mask=tensor((ids != PAD).astype(np.int64)),
                decoder_input_ids=tensor(np.ascontiguousarray(ids[:, :3])))
    got = {name: None if getattr(out, name, None) is None else len(getattr(out, name)) for name in OUTPUTS}
    assert got == {name: case["outputs"][name] for name in OUTPUTS}
