"""RoBERTa: BERT's layers with positions that start at `padding_idx + 1` and skip pads."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from .bert import TFBertEmbeddings, TFBertLMHeadModel, TFBertModel
from .common import ACT2FN, _dense, _layer_norm, _output_projection, _project_to_vocab


def create_position_ids_from_input_ids(input_ids, padding_idx: int, past_length=0):
    """Position ids as transformers' RoBERTa makes them: `[B, S]` ids -> `[B, S]` positions.

    Non-pad tokens count up from `padding_idx + 1 + past_length`; pads get `padding_idx`.
    """
    mask = tf.cast(tf.not_equal(input_ids, padding_idx), tf.int32)
    incremental = (tf.cumsum(mask, axis=1) + tf.cast(past_length, tf.int32)) * mask
    return incremental + padding_idx


class TFRobertaEmbeddings(TFBertEmbeddings):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.padding_idx = config.pad_token_id

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            position_ids = create_position_ids_from_input_ids(input_ids, self.padding_idx, past_length)
        return self.position_embeddings(position_ids)


class TFRobertaLMHead(keras.layers.Layer):
    """Dense, gelu (always the exact one, whatever `hidden_act`), LayerNorm, projection + bias."""

    def __init__(self, config: ArchConfig, input_embeddings: keras.layers.Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = _dense(config.hidden_size, config.hidden_size, "dense")
        self.layer_norm = _layer_norm(config.hidden_size, config.layer_norm_eps, "layer_norm")
        self.decoder = _output_projection(config, input_embeddings, "decoder")
        self.bias = self.add_weight(shape=(config.vocab_size,), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, features):
        return _project_to_vocab(self.decoder, self.layer_norm(ACT2FN["gelu"](self.dense(features)))) + self.bias


class TFRobertaModel(TFBertModel):
    embeddings_class = TFRobertaEmbeddings


class TFRobertaForCausalLM(TFBertLMHeadModel):
    base_model_prefix = "roberta"
    output_embeddings_path = "lm_head.decoder"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        keras.Model.__init__(self, **kwargs)
        self.config = config
        self.roberta = TFRobertaModel(config, add_pooling_layer=False, shared=shared, name="roberta")
        self.lm_head = TFRobertaLMHead(config, self.roberta.get_input_embeddings(), name="lm_head")
        self.built = True  # every weight exists from here on

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)


class TFXLMRobertaModel(TFRobertaModel):
    """XLM-RoBERTa's encoder: RoBERTa under model_type "xlm-roberta"."""


class TFXLMRobertaForCausalLM(TFRobertaForCausalLM):
    """XLM-RoBERTa's decoder: RoBERTa's under model_type "xlm-roberta"."""


class TFCamembertModel(TFRobertaModel):
    """CamemBERT's encoder: RoBERTa under model_type "camembert"."""


class TFCamembertForCausalLM(TFRobertaForCausalLM):
    """CamemBERT's decoder: RoBERTa's under model_type "camembert"."""
