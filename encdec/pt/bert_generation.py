"""BertGeneration: BERT's layers with no token types and no pooler, and a one-projection LM head."""

from __future__ import annotations

import torch
from torch import nn

from .bert import BertLMHeadModel, BertModel, _padding_idx
from .fast_linear import Linear


class BertGenerationEmbeddings(nn.Module):
    """Word + absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=_padding_idx(config))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _position_limit(self) -> int:
        return self.config.max_position_embeddings

    def forward(self, input_ids, position_ids=None, past_length: int = 0):
        embeddings = self.word_embeddings(input_ids)
        if position_ids is None:
            # Positions past_length .. past_length + T - 1: [T, H], broadcast over the batch.
            embeddings = embeddings + self.position_embeddings.weight[past_length : past_length + input_ids.shape[1]]
        else:
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertGenerationOnlyLMHead(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.decoder = Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, hidden_states):
        return self.decoder(hidden_states)


class BertGenerationEncoder(BertModel):
    """The BertGeneration body (an encoder, or a decoder's base): no pooler, no token types."""

    embeddings_class = BertGenerationEmbeddings
    has_token_types = False

    def __init__(self, config) -> None:
        super().__init__(config, add_pooling_layer=False)


class BertGenerationDecoder(BertLMHeadModel):
    base_model_prefix = "bert"

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.bert = BertGenerationEncoder(config)
        self.lm_head = BertGenerationOnlyLMHead(config)
        if config.tie_word_embeddings:
            self.lm_head.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)
