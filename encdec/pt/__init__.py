"""The PyTorch port: `EncoderDecoderModel` and the architecture classes, named as in transformers.

Imports only torch and encdec's core.
"""

from .bart import BartForCausalLM
from .bert import BertLMHeadModel, BertModel
from .bert_generation import BertGenerationDecoder, BertGenerationEncoder
from .electra import ElectraForCausalLM, ElectraModel
from .encoder_decoder import EncoderDecoderModel, shift_tokens_right
from .gpt2 import GPT2LMHeadModel, GPT2Model
from .rembert import RemBertForCausalLM, RemBertModel
from .roberta import (
    CamembertForCausalLM,
    CamembertModel,
    RobertaForCausalLM,
    RobertaModel,
    XLMRobertaForCausalLM,
    XLMRobertaModel,
)

__all__ = [
    "BartForCausalLM",
    "BertGenerationDecoder",
    "BertGenerationEncoder",
    "BertLMHeadModel",
    "BertModel",
    "EncoderDecoderModel",
    "GPT2LMHeadModel",
    "GPT2Model",
    "RobertaForCausalLM",
    "RobertaModel",
    "XLMRobertaModel",
    "XLMRobertaForCausalLM",
    "CamembertModel",
    "CamembertForCausalLM",
    "ElectraModel",
    "ElectraForCausalLM",
    "shift_tokens_right",
    "RemBertModel",
    "RemBertForCausalLM",
]
