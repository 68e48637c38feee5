"""The TensorFlow port (Keras 3): `TFEncoderDecoderModel` and the architecture classes, named as in transformers.

Imports only TensorFlow, Keras 3 and encdec's core. Keras must run on its TensorFlow
backend: with `KERAS_BACKEND` set to another one, importing this port fails here,
before any model is built, rather than later with an unrelated error.
"""

import os as _os

import keras as _keras

from ..errors import ConfigError as _ConfigError

if _keras.backend.backend() != "tensorflow":
    raise _ConfigError(
        f"encdec.tf needs Keras' TensorFlow backend, but Keras runs on {_keras.backend.backend()!r} "
        f"(KERAS_BACKEND={_os.environ.get('KERAS_BACKEND')!r}); expected KERAS_BACKEND unset or 'tensorflow'"
    )

from .bart import TFBartForCausalLM  # noqa: E402
from .bert import TFBertLMHeadModel, TFBertModel  # noqa: E402
from .bert_generation import TFBertGenerationDecoder, TFBertGenerationEncoder  # noqa: E402
from .electra import TFElectraForCausalLM, TFElectraModel  # noqa: E402
from .encoder_decoder import TFEncoderDecoderModel, shift_tokens_right  # noqa: E402
from .gpt2 import TFGPT2LMHeadModel, TFGPT2Model  # noqa: E402
from .rembert import TFRemBertForCausalLM, TFRemBertModel  # noqa: E402
from .roberta import (  # noqa: E402
    TFCamembertForCausalLM,
    TFCamembertModel,
    TFRobertaForCausalLM,
    TFRobertaModel,
    TFXLMRobertaForCausalLM,
    TFXLMRobertaModel,
)

__all__ = [
    "TFBartForCausalLM",
    "TFBertGenerationDecoder",
    "TFBertGenerationEncoder",
    "TFBertLMHeadModel",
    "TFBertModel",
    "TFEncoderDecoderModel",
    "TFGPT2LMHeadModel",
    "TFGPT2Model",
    "TFRobertaForCausalLM",
    "TFRobertaModel",
    "TFXLMRobertaModel",
    "TFXLMRobertaForCausalLM",
    "TFCamembertModel",
    "TFCamembertForCausalLM",
    "TFElectraModel",
    "TFElectraForCausalLM",
    "shift_tokens_right",
    "TFRemBertModel",
    "TFRemBertForCausalLM",
]
