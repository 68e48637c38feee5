"""RemBERT: BERT's layers over narrower input embeddings, projected to the layers' width
(`encoder.embedding_hidden_mapping_in`), and an LM head with output embeddings of their own.

`TFRemBertModel` (encoder) and `TFRemBertForCausalLM` (decoder), as transformers names them;
the attention, layers and pooler are BERT's.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ..config import ArchConfig
from .bert import TFBertEncoder, TFBertLMHeadModel, TFBertModel
from .common import ACT2FN, _dense, _layer_norm


class TFRemBertEncoder(TFBertEncoder):
    """BERT's layer stack after a projection of the embeddings to `hidden_size`; the first hidden state
    returned is the projected one, as in transformers."""

    def __init__(self, config: ArchConfig, shared: "TFRemBertEncoder | None" = None, **kwargs: Any) -> None:
        super().__init__(config, shared=shared, **kwargs)
        if shared is not None:
            self.embedding_hidden_mapping_in = shared.embedding_hidden_mapping_in
        else:
            self.embedding_hidden_mapping_in = _dense(config.hidden_size, config.input_embedding_size,
                                                      "embedding_hidden_mapping_in")

    def call(
        self,
        hidden_states,
        attention_bias=None,
        encoder_hidden_states=None,
        encoder_bias=None,
        past_key_values=None,
        cache_index=None,
        output_attentions=False,
        output_hidden_states=False,
        training=False,
    ):
        # Named arguments: Keras refuses a `**kwargs` that mixes tensors and other values.
        # [B, S, input_embedding_size] -> [B, S, hidden_size]
        hidden_states = self.embedding_hidden_mapping_in(hidden_states)
        return super().call(hidden_states, attention_bias, encoder_hidden_states, encoder_bias, past_key_values,
                            cache_index, output_attentions, output_hidden_states, training)


class _TFRemBertOutputEmbeddings(keras.layers.Layer):
    """The output embeddings `[V, output_embedding_size]` (transformers' TF `decoder/weight`, PyTorch's layout)
    and their bias `[V]`."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shape = (config.vocab_size, config.output_embedding_size)
        self.embeddings = self.add_weight(shape=shape, initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(config.vocab_size,), initializer="zeros", name="bias")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        # [..., E] x [V, E] -> [..., V]: the hidden axes contracted, no transposed copy of the table.
        return tf.einsum("...e,ve->...v", hidden_states, self.embeddings) + self.bias


class TFRemBertLMPredictionHead(keras.layers.Layer):
    """Dense to `output_embedding_size`, activation, LayerNorm, then the output embeddings and their bias."""

    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        e = config.output_embedding_size
        self.dense = _dense(e, config.hidden_size, "dense")
        self.decoder = _TFRemBertOutputEmbeddings(config, name="decoder")
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = _layer_norm(e, config.layer_norm_eps, "LayerNorm")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class TFRemBertOnlyMLMHead(keras.layers.Layer):
    def __init__(self, config: ArchConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.predictions = TFRemBertLMPredictionHead(config, name="predictions")
        self.built = True  # every weight exists from here on

    def call(self, hidden_states):
        return self.predictions(hidden_states)


class TFRemBertModel(TFBertModel):
    """The RemBERT body: embeddings, their projection and the layers, and (as an encoder) the pooler.
    `shared`: an encoder whose embeddings and layers this decoder body uses too (tie_encoder_decoder)."""

    encoder_class = TFRemBertEncoder


class TFRemBertForCausalLM(TFBertLMHeadModel):
    """A RemBERT decoder with its LM head (untied output embeddings)."""

    base_model_prefix = "rembert"

    def __init__(self, config: ArchConfig, shared: keras.Model | None = None, **kwargs: Any) -> None:
        keras.Model.__init__(self, **kwargs)
        self.config = config
        self.rembert = TFRemBertModel(config, add_pooling_layer=False, shared=shared, name="rembert")
        self.cls = TFRemBertOnlyMLMHead(config, name="mlm___cls")
        self.built = True  # every weight exists from here on

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]` (never tied to the input embeddings)."""
        return self.cls(hidden_states)
