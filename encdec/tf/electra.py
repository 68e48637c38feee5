"""ELECTRA: BERT's layers over embeddings of width `embedding_size`, projected to the hidden size by
`embeddings_project` when the two differ; no pooler; the generator's LM head as decoder head."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from ..weights.names import has_embeddings_project
from .bert import TFBertLMHeadModel, TFBertModel
from .common import ACT2FN, _dense, _layer_norm, _project_to_vocab


class TFElectraGeneratorPredictions(keras.layers.Layer):
    """Dense hidden -> embedding width, gelu (always the exact one, whatever `hidden_act`, as in
    transformers' PyTorch class), LayerNorm."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.LayerNorm = _layer_norm(config.embedding_size, config.layer_norm_eps, "LayerNorm")
        self.dense = _dense(config.embedding_size, config.hidden_size, "dense")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.LayerNorm(ACT2FN["gelu"](self.dense(hidden_states)))


class TFElectraGeneratorLMHead(keras.layers.Layer):
    """Embedding width -> vocabulary: the word embeddings when tied, else its own `kernel` `[E, V]`; plus `bias`."""

    def __init__(self, config: ArchConfig, input_embeddings: keras.layers.Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_embeddings = input_embeddings if config.tie_word_embeddings else None
        self.kernel = None
        if not config.tie_word_embeddings:
            self.kernel = self.add_weight(shape=(config.embedding_size, config.vocab_size), initializer="zeros",
                                          name="kernel")
        self.bias = self.add_weight(shape=(config.vocab_size,), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        if self.kernel is None:
            return _project_to_vocab(self.input_embeddings, hidden_states) + self.bias
        return tf.matmul(hidden_states, self.kernel) + self.bias


class TFElectraModel(TFBertModel):
    """The ELECTRA body (an encoder, or a decoder's base): BERT's, with no pooler and the embeddings'
    projection. `shared`: the body whose weights this one uses too (tie_encoder_decoder)."""

    def __init__(self, config: ArchConfig, shared: "TFElectraModel | None" = None, **kwargs: Any) -> None:
        super().__init__(config, add_pooling_layer=False, shared=shared, **kwargs)
        if not has_embeddings_project(config):
            self.embeddings_project = None
        elif shared is not None:
            self.embeddings_project = shared.embeddings_project
        else:
            self.embeddings_project = _dense(config.hidden_size, config.embedding_size, "embeddings_project")

    def _embed(self, input_ids, token_type_ids, position_ids, past_length, training):
        hidden = super()._embed(input_ids, token_type_ids, position_ids, past_length, training)  # [B, S, E]
        return hidden if self.embeddings_project is None else self.embeddings_project(hidden)  # [B, S, H]


class TFElectraForCausalLM(TFBertLMHeadModel):
    """An ELECTRA decoder with the generator's head (transformers 4.57 has no TF ELECTRA decoder; its
    TFElectraForMaskedLM head and names)."""

    base_model_prefix = "electra"
    output_embeddings_path = "generator_lm_head"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        keras.Model.__init__(self, **kwargs)
        self.config = config
        self.electra = TFElectraModel(config, shared=shared, name="electra")
        self.generator_predictions = TFElectraGeneratorPredictions(config, name="generator_predictions")
        self.generator_lm_head = TFElectraGeneratorLMHead(
            config, self.electra.get_input_embeddings(), name="generator_lm_head"
        )
        if config.tie_word_embeddings:
            # The head projects with the word embeddings; untied, with its own `kernel`.
            self.output_embeddings_path = "generator_lm_head.input_embeddings"
        self.built = True  # every weight exists from here on

    def compute_logits(self, hidden_states):
        return self.generator_lm_head(self.generator_predictions(hidden_states))
