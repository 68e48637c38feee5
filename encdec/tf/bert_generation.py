"""BertGeneration: BERT's layers with no token types and no pooler, and a one-projection LM head."""

from __future__ import annotations

from typing import Any

import keras

from ..config import ArchConfig
from .bert import TFBertEmbeddings, TFBertLMHeadModel, TFBertModel
from .common import _output_projection, _project_to_vocab


class TFBertGenerationEmbeddings(TFBertEmbeddings):
    """Word + absolute position embeddings, then LayerNorm and dropout."""

    has_token_types = False

    def call(self, input_ids, position_ids=None, past_length=0, training=False):
        embeddings = self.word_embeddings(input_ids) + self._position_embeddings(input_ids, position_ids, past_length)
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
    output_embeddings_path = "lm_head.decoder"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        keras.Model.__init__(self, **kwargs)
        self.config = config
        self.bert = TFBertGenerationEncoder(config, shared=shared, name="bert")
        self.lm_head = TFBertGenerationOnlyLMHead(config, self.bert.get_input_embeddings(), name="lm_head")
        self.built = True  # every weight exists from here on

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)
