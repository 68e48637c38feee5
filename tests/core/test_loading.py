"""encdec.loading and the config conveniences: transformers' loading kwargs routed once for the three
ports, unknown kwargs refused with a suggestion, the generic attributes of transformers 4.x configs,
configs read from and written to a folder, and nothing that is not JSON reaching config.json. numpy only.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from encdec.config import ArchConfig, BertConfig, EncoderDecoderConfig, GenerationConfig, GPT2Config, RobertaConfig
from encdec.errors import ConfigError
from encdec.loading import (
    LoadingOptions,
    as_arch_config,
    as_encoder_decoder_config,
    auto_dtype,
    check_json_config,
    split_loading_kwargs,
)
from encdec.weights.names import model_spec
from encdec.weights.pretrained import join_pretrained, read_model_folder, write_model_folder

SMALL = dict(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
             max_position_embeddings=44)

# transformers 4.57.1, src/transformers/configuration_utils.py: the attributes `PretrainedConfig.__init__`
# sets (with their defaults) and `_get_global_generation_defaults()`. transformers 5 keeps only some of
# them (tests/interop/test_dropin_loading.py compares those with transformers 5's own values).
TRANSFORMERS_457_DEFAULTS = {
    "return_dict": True, "output_hidden_states": False, "output_attentions": False, "torchscript": False,
    "use_return_dict": True, "chunk_size_feed_forward": 0, "is_encoder_decoder": False,
    "cross_attention_hidden_size": None, "tie_encoder_decoder": False, "architectures": None,
    "finetuning_task": None, "num_labels": 2, "tokenizer_class": None, "prefix": None, "sep_token_id": None,
    "decoder_start_token_id": None, "task_specific_params": None, "problem_type": None, "dtype": None,
    "id2label": {0: "LABEL_0", 1: "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "pruned_heads": {},
    "tf_legacy_loss": False, "use_bfloat16": False,
    "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1,
    "num_beam_groups": 1, "diversity_penalty": 0.0, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    "typical_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "num_return_sequences": 1, "output_scores": False,
    "return_dict_in_generate": False, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "remove_invalid_values": False, "exponential_decay_length_penalty": None, "suppress_tokens": None,
    "begin_suppress_tokens": None,
}


def joined(**kwargs) -> EncoderDecoderConfig:
    return EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(**SMALL), BertConfig(**SMALL), **kwargs)


# ---------------------------------------------------------------- loading kwargs


@pytest.mark.parametrize("given, expected", [
    ({"torch_dtype": "bfloat16"}, "bfloat16"), ({"torch_dtype": "torch.float16"}, "float16"),
    ({"dtype": "float32"}, "float32"), ({"torch_dtype": "auto"}, "auto"),
])
def test_pytorch_dtype_options_are_taken_out(given, expected):
    kwargs = dict(given, decoder_start_token_id=2)
    options = split_loading_kwargs(kwargs, "pt")
    assert options == LoadingOptions(dtype=expected)
    assert kwargs == {"decoder_start_token_id": 2}  # only the config's keys stay


@pytest.mark.parametrize("device_map, expected", [
    ("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), (0, "cuda:0"), ({"": "cpu"}, "cpu"),
])
def test_device_map_names_one_device(device_map, expected):
    assert split_loading_kwargs({"device_map": device_map}, "pt").device == expected


@pytest.mark.parametrize("device_map", [{"encoder": 0, "decoder": 1}, {"": 0, "decoder": "cpu"}, "balanced"])
def test_device_map_over_several_devices_is_the_distributed_apis_job(device_map):
    with pytest.raises(ConfigError, match="device_map=.*distributed API"):
        split_loading_kwargs({"device_map": device_map}, "pt")


def test_bad_loading_values_are_errors_listing_the_accepted_ones():
    expected = r"attn_implementation='flash_attention_2': expected one of \('sdpa', 'eager'\)"
    with pytest.raises(ConfigError, match=expected):
        split_loading_kwargs({"attn_implementation": "flash_attention_2"}, "pt")
    with pytest.raises(ConfigError, match="torch_dtype='int8': unknown dtype; expected 'auto' or one of"):
        split_loading_kwargs({"torch_dtype": "int8"}, "pt")
    with pytest.raises(ConfigError, match="both torch_dtype= and dtype="):
        split_loading_kwargs({"torch_dtype": "float16", "dtype": "float16"}, "pt")
    assert split_loading_kwargs({"attn_implementation": "eager"}, "pt").attn_implementation == "eager"


@pytest.mark.parametrize("port", ["tf", "flax"])
@pytest.mark.parametrize("key, value", [("device_map", "auto"), ("attn_implementation", "sdpa"),
                                        ("torch_dtype", "float32")])
def test_tf_and_flax_refuse_the_pytorch_loader_options(port, key, value):
    with pytest.raises(ConfigError, match=f"^{key}= is an option of the PyTorch loader.*encdec's {port} port"):
        split_loading_kwargs({key: value}, port)


def test_format_flags_are_taken_and_said_once_at_debug_level(caplog):
    kwargs = {"from_pt": True, "encoder_from_tf": True, "decoder_from_flax": False, "pad_token_id": 0}
    with caplog.at_level(logging.DEBUG, logger="encdec"):
        options = split_loading_kwargs(kwargs, "flax")
    assert options == LoadingOptions() and kwargs == {"pad_token_id": 0}
    records = [r for r in caplog.records if "from_pt" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    assert "encoder_from_tf" in records[0].getMessage() and "decoder_from_flax" in records[0].getMessage()


def test_auto_dtype_is_the_configs_then_the_checkpoints():
    state = {"a": np.zeros(2, np.int64), "b": np.zeros(2, np.float16)}
    assert auto_dtype(joined(), state) == "float16"
    assert auto_dtype(joined(dtype="bfloat16"), state) == "bfloat16"
    assert auto_dtype(joined(torch_dtype="float32"), state) == "float32"
    assert auto_dtype(joined(), {"a": np.zeros(2, np.int64)}) is None


# ---------------------------------------------------------------- unknown kwargs


def test_unknown_from_pretrained_kwarg_is_named_with_the_closest_name(tmp_path):
    config = joined(decoder_start_token_id=2, pad_token_id=0)
    write_model_folder(tmp_path / "m", init_weights_state(config), model_spec(config), config, None)
    with pytest.raises(ConfigError, match="unknown keyword argument 'max_lenght'.*did you mean 'max_length'"):
        read_model_folder(tmp_path / "m", max_lenght=5)
    with pytest.raises(ConfigError, match="unknown keyword argument 'devise_map'.*did you mean 'device_map'"):
        read_model_folder(tmp_path / "m", devise_map="cpu")
    # Keys the config has (its own, its folder's extras, the generic 4.x ones) are set.
    folder = read_model_folder(tmp_path / "m", max_length=7, tie_encoder_decoder=False)
    assert folder.config.max_length == 7


def init_weights_state(config):
    from encdec.weights.names import init_weights

    return init_weights(config, seed=0)


def test_unknown_join_kwargs_are_named_with_the_role_prefix(tmp_path):
    enc = BertConfig(**SMALL)
    enc.save_pretrained(tmp_path / "enc")
    state = {k[len("encoder."):]: v for k, v in init_weights_state(joined()).items() if k.startswith("encoder.")}
    from safetensors.numpy import save_file

    save_file(state, str(tmp_path / "enc" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match="'encoder_hidden_dropout_prop'.*did you mean 'encoder_hidden_dropout_prob'"):
        join_pretrained(tmp_path / "enc", tmp_path / "enc", {"encoder_hidden_dropout_prop": 0.0})
    with pytest.raises(ConfigError, match="'decoder_start_token'.*did you mean 'decoder_start_token_id'"):
        join_pretrained(tmp_path / "enc", tmp_path / "enc", {"decoder_start_token": 2})
    with pytest.raises(ConfigError, match=r"^encoder_model is a builtins\.object; expected a model of this port"):
        join_pretrained(None, tmp_path / "enc", {"encoder_model": object()})
    config = join_pretrained(tmp_path / "enc", tmp_path / "enc", {"decoder_max_length": 9, "encoder_model": None,
                                                                  "num_beams": 3}).config
    assert config.decoder.max_length == 9 and config.num_beams == 3


# ---------------------------------------------------------------- generic attributes


@pytest.mark.parametrize("config", [BertConfig(), GPT2Config(), joined()], ids=["bert", "gpt2", "encoder-decoder"])
def test_generic_attributes_read_as_transformers_457_defaults(config):
    own = {k for k in TRANSFORMERS_457_DEFAULTS if k in config.to_dict()}
    for name, value in TRANSFORMERS_457_DEFAULTS.items():
        if name not in own:
            assert getattr(config, name) == value, name
    # Read, not written: config.json holds only what was set.
    assert not set(TRANSFORMERS_457_DEFAULTS) - own & set(config.to_dict())
    with pytest.raises(AttributeError, match="no attribute 'not_an_attribute'"):
        config.not_an_attribute  # noqa: B018


def test_a_set_generic_attribute_is_written(tmp_path):
    config = BertConfig(**SMALL)
    config.max_length = 64
    config.output_attentions = True
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["max_length"] == 64 and data["output_attentions"] is True and "num_beams" not in data
    assert BertConfig.from_pretrained(tmp_path).max_length == 64


# ---------------------------------------------------------------- configs in folders


@pytest.mark.parametrize("cls", [BertConfig, RobertaConfig, GPT2Config])
def test_architecture_configs_save_to_and_load_from_a_folder(tmp_path, cls):
    config = cls(vocab_size=77, initializer_range=0.5)
    config.save_pretrained(tmp_path / "new")  # the folder is made
    assert json.loads((tmp_path / "new" / "config.json").read_text())["model_type"] == cls.model_type
    assert cls.from_pretrained(tmp_path / "new") == config
    assert ArchConfig.from_pretrained(tmp_path / "new") == config


def test_a_config_of_another_architecture_is_an_error_naming_both(tmp_path):
    GPT2Config().save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"config\.json: the folder holds a 'gpt2' config; expected 'bert'"):
        BertConfig.from_pretrained(tmp_path)


def test_encoder_decoder_config_saves_to_and_loads_from_a_folder(tmp_path):
    config = joined(decoder_start_token_id=2)
    config.save_pretrained(tmp_path)
    assert EncoderDecoderConfig.from_pretrained(tmp_path) == config


def test_a_value_that_is_not_json_is_refused_before_anything_is_written(tmp_path):
    config = joined()
    config.torch_dtype = np.dtype("float32")  # what a user's `torch_dtype=torch.float32` became before
    expected = r"key 'torch_dtype' is dtype\('float32'\).*cannot be written to config\.json"
    with pytest.raises(ConfigError, match=expected):
        config.save_pretrained(tmp_path / "c")
    assert not os.path.exists(tmp_path / "c" / "config.json")
    config = joined()
    config.decoder.custom = {1, 2}
    with pytest.raises(ConfigError, match=r"config\.decoder key 'custom'"):
        write_model_folder(tmp_path / "m", init_weights_state(config), model_spec(config), config, None)
    assert not os.path.exists(tmp_path / "m")
    generation = GenerationConfig(max_length=5)
    generation.extra["callback"] = print
    with pytest.raises(ConfigError, match="generation config key 'callback'"):
        write_model_folder(tmp_path / "m", init_weights_state(joined()), model_spec(joined()), joined(), generation)
    assert not os.path.exists(tmp_path / "m")
    check_json_config({"a": [1, "b", None], "encoder": {"x": 1.5}})


def test_wrong_config_types_name_the_class_that_came():
    with pytest.raises(ConfigError, match=r"^config is a builtins\.list; expected an encdec\.EncoderDecoderConfig"):
        as_encoder_decoder_config([1])
    with pytest.raises(ConfigError, match=r"^encoder_config is a builtins\.str; expected an encdec architecture"):
        as_arch_config("bert", "encoder_config")
    with pytest.raises(ConfigError, match=r"^decoder_config is a builtins\.int"):
        EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(), 3)
    assert as_arch_config({"model_type": "gpt2", "n_embd": 64, "n_head": 4}).hidden_size == 64
