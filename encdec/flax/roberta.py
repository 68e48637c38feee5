"""RoBERTa: BERT's layers with positions that start at `padding_idx + 1` and skip pads."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from .bert import FlaxBertEmbeddings, FlaxBertForCausalLM, FlaxBertModel, _layer_norm, _output_projection
from .common import ACT2FN


def create_position_ids_from_input_ids(input_ids, padding_idx, past_length=0):
    """Position ids as transformers' RoBERTa makes them: `[B, T]` ids -> `[B, T]` positions.

    Non-pad tokens count up from `padding_idx + 1 + past_length`; pads get `padding_idx`.
    """
    mask = (input_ids != padding_idx).astype(jnp.int32)
    incremental = (jnp.cumsum(mask, axis=1) + past_length) * mask
    return incremental + padding_idx


class FlaxRobertaEmbeddings(FlaxBertEmbeddings):
    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            position_ids = create_position_ids_from_input_ids(input_ids, self.config.pad_token_id, past_length)
        return self.position_embeddings(position_ids.astype("i4"))


class FlaxRobertaLMHead(nn.Module):
    """Dense, gelu (always the exact one, whatever `hidden_act`), LayerNorm, projection + bias."""

    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = nn.Dense(cfg.hidden_size, dtype=self.dtype)
        self.layer_norm = _layer_norm(cfg, self.dtype)
        if not cfg.tie_word_embeddings:
            self.decoder = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype)
        self.bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, features, shared_embedding=None):
        x = self.layer_norm(ACT2FN["gelu"](self.dense(features)))
        return _output_projection(self, x, shared_embedding)


class FlaxRobertaModel(FlaxBertModel):
    embeddings_class = FlaxRobertaEmbeddings


class FlaxRobertaForCausalLM(FlaxBertForCausalLM):
    base_model_prefix = "roberta"
    output_embeddings_path = "lm_head.decoder"

    def setup(self):
        self.roberta = FlaxRobertaModel(self.config, self.dtype, add_pooling_layer=False,
                                        gradient_checkpointing=self.gradient_checkpointing)
        self.lm_head = FlaxRobertaLMHead(self.config, self.dtype)

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states, self._shared_embedding())


class FlaxXLMRobertaModel(FlaxRobertaModel):
    """XLM-RoBERTa's encoder: RoBERTa under model_type "xlm-roberta"."""


class FlaxXLMRobertaForCausalLM(FlaxRobertaForCausalLM):
    """XLM-RoBERTa's decoder: RoBERTa's under model_type "xlm-roberta"."""


class FlaxCamembertModel(FlaxRobertaModel):
    """CamemBERT's encoder: RoBERTa under model_type "camembert"."""


class FlaxCamembertForCausalLM(FlaxRobertaForCausalLM):
    """CamemBERT's decoder: RoBERTa's under model_type "camembert"."""
