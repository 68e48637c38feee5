"""BertGeneration: BERT's layers with no token types and no pooler, and a one-projection LM head."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from .bert import TFBertLMHeadModel, TFBertModel
from .common import _embedding, _layer_norm, _output_projection, _project_to_vocab


class TFBertGenerationEmbeddings(keras.layers.Layer):
    """Word + absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        h = config.hidden_size
        self.word_embeddings = _embedding(config.vocab_size, h, "word_embeddings")
        self.position_embeddings = _embedding(config.max_position_embeddings, h, "position_embeddings")
        self.LayerNorm = _layer_norm(h, config.layer_norm_eps, "LayerNorm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.built = True  # every weight exists from here on

    def call(self, input_ids, position_ids=None, past_length=0, training=False):
        if position_ids is None:
            # Positions past_length .. past_length + S - 1: [1, S], broadcast over the batch.
            position_ids = (tf.range(tf.shape(input_ids)[1]) + tf.cast(past_length, tf.int32))[None, :]
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings), training=training)


class TFBertGenerationOnlyLMHead(keras.layers.Layer):
    def __init__(self, config: ArchConfig, input_embeddings: keras.layers.Embedding, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decoder = _output_projection(config, input_embeddings, "decoder")
        self.bias = self.add_weight(shape=(config.vocab_size,), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return _project_to_vocab(self.decoder, hidden_states) + self.bias


class TFBertGenerationEncoder(TFBertModel):
    """The BertGeneration body (an encoder, or a decoder's base): no pooler, no token types."""

    embeddings_class = TFBertGenerationEmbeddings
    has_token_types = False

    def __init__(self, config: ArchConfig, shared: TFBertModel | None = None, **kwargs: Any) -> None:
        super().__init__(config, add_pooling_layer=False, shared=shared, **kwargs)


class TFBertGenerationDecoder(TFBertLMHeadModel):
    base_model_prefix = "bert"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        keras.Model.__init__(self, **kwargs)
        self.config = config
        self.bert = TFBertGenerationEncoder(config, shared=shared, name="bert")
        self.lm_head = TFBertGenerationOnlyLMHead(config, self.bert.get_input_embeddings(), name="lm_head")
        self.built = True  # every weight exists from here on

    def get_output_embeddings(self) -> keras.layers.Layer:
        return self.lm_head.decoder

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)
