"""BertGeneration: BERT's layers with no token types and no pooler, and a one-projection LM head."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from .bert import FlaxBertEmbeddings, FlaxBertForCausalLM, FlaxBertModel, _output_projection


class FlaxBertGenerationEmbeddings(FlaxBertEmbeddings):
    """Word + absolute position embeddings, then LayerNorm and dropout."""

    has_token_types = False

    def __call__(self, input_ids, position_ids=None, past_length=0, deterministic=True):
        embeddings = self.word_embeddings(input_ids.astype("i4"))
        embeddings = embeddings + self._position_embeddings(input_ids, position_ids, past_length)
        return self.dropout(self.LayerNorm(embeddings), deterministic=deterministic)


class FlaxBertGenerationOnlyLMHead(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        if not cfg.tie_word_embeddings:
            self.decoder = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype)
        self.bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        return _output_projection(self, hidden_states, shared_embedding)


class FlaxBertGenerationEncoder(FlaxBertModel):
    """The BertGeneration body (an encoder, or a decoder's base): no pooler, no token types."""

    add_pooling_layer: bool = False

    embeddings_class = FlaxBertGenerationEmbeddings
    has_token_types = False


class FlaxBertGenerationDecoder(FlaxBertForCausalLM):
    base_model_prefix = "bert"
    output_embeddings_path = "lm_head.decoder"

    def setup(self):
        self.bert = FlaxBertGenerationEncoder(self.config, self.dtype,
                                              gradient_checkpointing=self.gradient_checkpointing)
        self.lm_head = FlaxBertGenerationOnlyLMHead(self.config, self.dtype)

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states, self._shared_embedding())
