"""RemBERT: BERT's layers over narrower input embeddings, projected to the layers' width
(`encoder.embedding_hidden_mapping_in`), and an LM head with output embeddings of their own.

`FlaxRemBertModel` (encoder) and `FlaxRemBertForCausalLM` (decoder). transformers had no Flax
RemBERT; the classes and parameter paths follow its Flax BERT (`embeddings/...`, `encoder/layer/0/...`,
`cls/predictions/...`), the output embeddings kept `[V, output_embedding_size]` as
`cls/predictions/decoder/embedding` (the layout of an `nn.Embed` table) with `cls/predictions/decoder/bias`.
The attention, layers and pooler are BERT's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ..config import ArchConfig
from .bert import FlaxBertEncoder, FlaxBertForCausalLM, FlaxBertModel, _layer_norm
from .common import ACT2FN


class FlaxRemBertEncoder(FlaxBertEncoder):
    """BERT's layer stack after a projection of the embeddings to `hidden_size`; the first hidden state
    returned is the projected one, as in transformers."""

    def setup(self):
        super().setup()
        self.embedding_hidden_mapping_in = nn.Dense(self.config.hidden_size, dtype=self.dtype)

    def __call__(self, hidden_states, *args, **kwargs):
        # [B, T, input_embedding_size] -> [B, T, hidden_size]
        return super().__call__(self.embedding_hidden_mapping_in(hidden_states), *args, **kwargs)


class _FlaxRemBertOutputEmbeddings(nn.Module):
    """The output embeddings `embedding` `[V, output_embedding_size]` and their `bias` `[V]`."""

    config: ArchConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states):
        cfg = self.config
        table = self.param("embedding", nn.initializers.normal(cfg.initializer_range),
                           (cfg.vocab_size, cfg.output_embedding_size))
        bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,))
        # [..., E] x [V, E] -> [..., V]: the hidden axes contracted, no transposed copy of the table.
        logits = jnp.einsum("...e,ve->...v", hidden_states, table.astype(self.dtype))
        return logits + bias.astype(self.dtype)


class FlaxRemBertLMPredictionHead(nn.Module):
    """Dense to `output_embedding_size`, activation, LayerNorm, then the output embeddings and their bias."""

    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.dense = nn.Dense(self.config.output_embedding_size, dtype=self.dtype)
        self.decoder = _FlaxRemBertOutputEmbeddings(self.config, self.dtype)
        self.LayerNorm = _layer_norm(self.config, self.dtype)

    def __call__(self, hidden_states):
        hidden_states = ACT2FN[self.config.hidden_act](self.dense(hidden_states))
        return self.decoder(self.LayerNorm(hidden_states))


class FlaxRemBertOnlyMLMHead(nn.Module):
    config: ArchConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.predictions = FlaxRemBertLMPredictionHead(self.config, self.dtype)

    def __call__(self, hidden_states):
        return self.predictions(hidden_states)


class FlaxRemBertModel(FlaxBertModel):
    """The RemBERT body: embeddings, their projection and the layers, and (as an encoder) the pooler."""

    encoder_class = FlaxRemBertEncoder


class FlaxRemBertForCausalLM(FlaxBertForCausalLM):
    """A RemBERT decoder with its LM head (untied output embeddings)."""

    base_model_prefix = "rembert"

    def setup(self):
        self.rembert = FlaxRemBertModel(self.config, self.dtype, add_pooling_layer=False,
                                        gradient_checkpointing=self.gradient_checkpointing)
        self.cls = FlaxRemBertOnlyMLMHead(self.config, self.dtype)

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]` (never tied to the input embeddings)."""
        return self.cls(hidden_states)
