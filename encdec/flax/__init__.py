"""The JAX / Flax port: Linen modules and `FlaxEncoderDecoderModel`, named as in transformers' Flax classes.

Imports only JAX, Flax and optax.
"""

from .bart import FlaxBartForCausalLM
from .bert import FlaxBertForCausalLM, FlaxBertModel
from .bert_generation import FlaxBertGenerationDecoder, FlaxBertGenerationEncoder
from .electra import FlaxElectraForCausalLM, FlaxElectraModel
from .encoder_decoder import FlaxEncoderDecoderModel, shift_tokens_right
from .gpt2 import FlaxGPT2LMHeadModel, FlaxGPT2Model
from .rembert import FlaxRemBertForCausalLM, FlaxRemBertModel
from .roberta import (
    FlaxCamembertForCausalLM,
    FlaxCamembertModel,
    FlaxRobertaForCausalLM,
    FlaxRobertaModel,
    FlaxXLMRobertaForCausalLM,
    FlaxXLMRobertaModel,
)
from .training import loss_fn, make_train_step, train_step

__all__ = [
    "FlaxBartForCausalLM",
    "FlaxBertForCausalLM",
    "FlaxBertGenerationDecoder",
    "FlaxBertGenerationEncoder",
    "FlaxBertModel",
    "FlaxEncoderDecoderModel",
    "FlaxGPT2LMHeadModel",
    "FlaxGPT2Model",
    "FlaxRobertaForCausalLM",
    "FlaxRobertaModel",
    "FlaxXLMRobertaModel",
    "FlaxXLMRobertaForCausalLM",
    "FlaxCamembertModel",
    "FlaxCamembertForCausalLM",
    "FlaxElectraModel",
    "FlaxElectraForCausalLM",
    "loss_fn",
    "make_train_step",
    "shift_tokens_right",
    "train_step",
    "FlaxRemBertModel",
    "FlaxRemBertForCausalLM",
]
