"""Every public model class of each port is importable from encdec.pt / encdec.tf / encdec.flax under
the name transformers gave it, so code written for transformers moves over by changing an import.

The names are transformers 4.57's (its last release with TF and Flax classes): modeling_bert.py,
modeling_roberta.py, modeling_bert_generation.py, modeling_gpt2.py and their modeling_tf_* and
modeling_flax_* counterparts. transformers had no TF or Flax BertGeneration; encdec's
TFBertGeneration* and FlaxBertGeneration* are its own extension, named after the PyTorch classes
(transformers had no Flax RemBERT either: FlaxRemBert* are encdec's, likewise), and so
is TFElectraForCausalLM (transformers had no TF ELECTRA decoder; its names are TFElectraForMaskedLM's head's),
and TFBartForCausalLM (its names are those of transformers' TF BART decoder layers, modeling_tf_bart.py).
"""

from __future__ import annotations

import importlib
import importlib.util

import pytest

TRANSFORMERS_4_57 = {
    "pt": ("BertModel", "BertLMHeadModel", "RobertaModel", "RobertaForCausalLM", "XLMRobertaModel",
           "XLMRobertaForCausalLM", "CamembertModel", "CamembertForCausalLM", "BertGenerationEncoder",
           "BertGenerationDecoder", "GPT2Model", "GPT2LMHeadModel", "RemBertModel", "RemBertForCausalLM",
           "EncoderDecoderModel", "ElectraModel", "ElectraForCausalLM", "BartForCausalLM"),
    "tf": ("TFBertModel", "TFBertLMHeadModel", "TFRobertaModel", "TFRobertaForCausalLM", "TFXLMRobertaModel",
           "TFXLMRobertaForCausalLM", "TFCamembertModel", "TFCamembertForCausalLM", "TFGPT2Model",
           "TFGPT2LMHeadModel", "TFRemBertModel", "TFRemBertForCausalLM", "TFEncoderDecoderModel",
           "TFElectraModel"),
    "flax": ("FlaxBertModel", "FlaxBertForCausalLM", "FlaxRobertaModel", "FlaxRobertaForCausalLM",
             "FlaxXLMRobertaModel", "FlaxXLMRobertaForCausalLM", "FlaxGPT2Model", "FlaxGPT2LMHeadModel",
             "FlaxEncoderDecoderModel", "FlaxElectraModel", "FlaxElectraForCausalLM",
             "FlaxBartForCausalLM"),
}
# encdec's own, where transformers had none.
EXTENSIONS = {
    "pt": (),
    "tf": ("TFBertGenerationEncoder", "TFBertGenerationDecoder", "TFElectraForCausalLM", "TFBartForCausalLM"),
    "flax": ("FlaxBertGenerationEncoder", "FlaxBertGenerationDecoder", "FlaxCamembertModel",
             "FlaxCamembertForCausalLM", "FlaxRemBertModel", "FlaxRemBertForCausalLM"),
}
# Names transformers never had, kept for a while; each must be the transformers-named class.
ALIASES: dict = {}
FRAMEWORKS = {"pt": ("torch",), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}


def _port(port: str):
    missing = [m for m in FRAMEWORKS[port] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{port}: {', '.join(missing)} not installed")
    return importlib.import_module(f"encdec.{port}")


def _model_classes(module) -> set[str]:
    """The model classes a port exports: its public classes, less the aliases."""
    return {name for name in module.__all__ if isinstance(getattr(module, name), type)}


@pytest.mark.parametrize("port", list(TRANSFORMERS_4_57))
def test_every_model_class_has_transformers_name(port):
    module = _port(port)
    aliases = ALIASES.get(port, {})
    for name in TRANSFORMERS_4_57[port] + EXTENSIONS[port]:
        cls = getattr(module, name, None)
        assert isinstance(cls, type), f"encdec.{port} has no class {name}"
        assert cls.__name__ == name, f"encdec.{port}.{name} is a class named {cls.__name__}"
    for alias, name in aliases.items():
        assert getattr(module, alias) is getattr(module, name), f"encdec.{port}.{alias} is not {name}"
    exported = _model_classes(module) - set(aliases)
    assert exported == set(TRANSFORMERS_4_57[port] + EXTENSIONS[port]), (
        f"encdec.{port} exports model classes {sorted(exported)}; expected transformers 4.57's names "
        f"{sorted(TRANSFORMERS_4_57[port])} and encdec's {sorted(EXTENSIONS[port])}"
    )
