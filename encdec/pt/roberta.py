"""RoBERTa: BERT's layers with positions that start at `padding_idx + 1` and skip pads."""

from __future__ import annotations

import torch
from torch import nn

from .bert import BertEmbeddings, BertLMHeadModel, BertModel, _padding_idx
from .common import ACT2FN
from .fast_linear import Linear


def create_position_ids_from_input_ids(input_ids, padding_idx: int, past_length: int = 0):
    """Position ids as transformers' RoBERTa makes them: `[B, T]` ids -> `[B, T]` positions.

    Non-pad tokens count up from `padding_idx + 1 + past_length`; pads get `padding_idx`.
    """
    mask = input_ids.ne(padding_idx).int()
    incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_length) * mask
    return incremental.long() + padding_idx


class RobertaEmbeddings(BertEmbeddings):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.padding_idx = _padding_idx(config)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=self.padding_idx
        )

    def _position_limit(self) -> int:
        # Positions 0 .. padding_idx are never used by a token.
        return self.config.max_position_embeddings - self.padding_idx - 1

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            position_ids = create_position_ids_from_input_ids(input_ids, self.padding_idx, past_length)
        return self.position_embeddings(position_ids)


class RobertaLMHead(nn.Module):
    """Dense, gelu (always the exact one, whatever `hidden_act`), LayerNorm, projection + bias."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, features):
        return self.decoder(self.layer_norm(ACT2FN["gelu"](self.dense(features))))


class RobertaModel(BertModel):
    embeddings_class = RobertaEmbeddings


class RobertaForCausalLM(BertLMHeadModel):
    base_model_prefix = "roberta"
    output_embeddings_path = "lm_head.decoder"

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self._tie_output_embeddings()

    def compute_logits(self, hidden_states):
        return self.lm_head(hidden_states)


class XLMRobertaModel(RobertaModel):
    """XLM-RoBERTa's encoder: RoBERTa under model_type "xlm-roberta"."""


class XLMRobertaForCausalLM(RobertaForCausalLM):
    """XLM-RoBERTa's decoder: RoBERTa's under model_type "xlm-roberta"."""


class CamembertModel(RobertaModel):
    """CamemBERT's encoder: RoBERTa under model_type "camembert"."""


class CamembertForCausalLM(RobertaForCausalLM):
    """CamemBERT's decoder: RoBERTa's under model_type "camembert"."""
