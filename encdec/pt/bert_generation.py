"""BertGeneration: BERT's layers with no token types and no pooler, and a one-projection LM head."""

from __future__ import annotations

import torch
from torch import nn

from .bert import BertEmbeddings, BertLMHeadModel, BertModel
from .fast_linear import Linear


class BertGenerationEmbeddings(BertEmbeddings):
    """Word + absolute position embeddings, then LayerNorm and dropout."""

    has_token_types = False

    def forward(self, input_ids, position_ids=None, past_length: int = 0):
        embeddings = self.word_embeddings(input_ids) + self._position_embeddings(input_ids, position_ids, past_length)
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
    output_embeddings_path = "lm_head.decoder"

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.bert = BertGenerationEncoder(config)
        self.lm_head = BertGenerationOnlyLMHead(config)
        self._tie_output_embeddings()

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)
