"""ELECTRA: BERT's layers over embeddings of width `embedding_size`, projected to the hidden size by
`embeddings_project` when the two differ; no pooler; the generator's LM head as decoder head."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from ..weights.names import has_embeddings_project
from .bert import FlaxBertForCausalLM, FlaxBertModel, _layer_norm
from .common import ACT2FN


class FlaxElectraGeneratorPredictions(nn.Module):
    """Dense hidden -> embedding width, gelu (always the exact one, whatever `hidden_act`, as in
    transformers' PyTorch class; transformers' Flax class applies `hidden_act`), LayerNorm."""

    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.LayerNorm = _layer_norm(self.config, self.dtype)
        self.dense = nn.Dense(self.config.embedding_size, dtype=self.dtype)

    def __call__(self, hidden_states):
        return self.LayerNorm(ACT2FN["gelu"](self.dense(hidden_states)))


class FlaxElectraGeneratorLMHead(nn.Module):
    """Embedding width -> vocabulary: the word embeddings when tied, else its own `kernel` `[E, V]`; plus `bias`."""

    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        if not cfg.tie_word_embeddings:
            self.kernel = self.param("kernel", nn.initializers.zeros, (cfg.embedding_size, cfg.vocab_size))
        self.bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        if shared_embedding is not None:
            # Contract the embedding axes of both: no transposed copy of the [V, E] table is made.
            logits = jnp.einsum("...e,ve->...v", hidden_states, shared_embedding.astype(self.dtype))
        else:
            logits = hidden_states @ self.kernel.astype(self.dtype)
        return logits + self.bias.astype(self.dtype)


class FlaxElectraModel(FlaxBertModel):
    """The ELECTRA body (an encoder, or a decoder's base): BERT's, with no pooler and the embeddings'
    projection."""

    add_pooling_layer: bool = False

    def setup(self):
        super().setup()
        if has_embeddings_project(self.config):
            self.embeddings_project = nn.Dense(self.config.hidden_size, dtype=self.dtype)

    def _embed(self, input_ids, token_type_ids, position_ids, past_length, deterministic):
        hidden = super()._embed(input_ids, token_type_ids, position_ids, past_length, deterministic)  # [B, T, E]
        return self.embeddings_project(hidden) if has_embeddings_project(self.config) else hidden  # [B, T, H]


class FlaxElectraForCausalLM(FlaxBertForCausalLM):
    """An ELECTRA decoder with the generator's head; `generator_lm_head` projects with the word embeddings
    when tied."""

    base_model_prefix = "electra"
    output_embeddings_path = "generator_lm_head"

    def setup(self):
        self.electra = FlaxElectraModel(self.config, self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        self.generator_predictions = FlaxElectraGeneratorPredictions(self.config, self.dtype)
        self.generator_lm_head = FlaxElectraGeneratorLMHead(self.config, self.dtype)

    def compute_logits(self, hidden_states):
        return self.generator_lm_head(self.generator_predictions(hidden_states), self._shared_embedding())
