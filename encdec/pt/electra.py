"""ELECTRA: BERT's layers over embeddings of width `embedding_size`, projected to the hidden size by
`embeddings_project` when the two differ; no pooler; the generator's LM head as decoder head."""

from __future__ import annotations

from torch import nn

from ..weights.names import has_embeddings_project
from .bert import BertLMHeadModel, BertModel
from .common import ACT2FN
from .fast_linear import Linear


class ElectraGeneratorPredictions(nn.Module):
    """Dense hidden -> embedding width, gelu (always the exact one, whatever `hidden_act`, as in
    transformers' PyTorch class), LayerNorm."""

    def __init__(self, config) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dense = Linear(config.hidden_size, config.embedding_size)

    def forward(self, hidden_states):
        return self.LayerNorm(ACT2FN["gelu"](self.dense(hidden_states)))


class ElectraGeneratorLMHead(Linear):
    """Embedding width -> vocabulary, with its own bias; its weight is the word embeddings when tied."""

    def __init__(self, config) -> None:
        super().__init__(config.embedding_size, config.vocab_size)

    def forward(self, hidden_states):
        return super().forward(hidden_states)


class ElectraModel(BertModel):
    """The ELECTRA body (an encoder, or a decoder's base): BERT's, with no pooler and the embeddings'
    projection."""

    def __init__(self, config) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.embeddings_project = (
            Linear(config.embedding_size, config.hidden_size) if has_embeddings_project(config) else None
        )

    def _embed(self, input_ids, token_type_ids, position_ids, past_length: int):
        hidden = super()._embed(input_ids, token_type_ids, position_ids, past_length)  # [B, T, E]
        return hidden if self.embeddings_project is None else self.embeddings_project(hidden)  # [B, T, H]


class ElectraForCausalLM(BertLMHeadModel):
    """An ELECTRA decoder with the generator's head; `generator_lm_head`'s weight is the word embeddings when
    tied, its bias its own."""

    base_model_prefix = "electra"
    output_embeddings_path = "generator_lm_head"

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = ElectraGeneratorLMHead(config)
        self._tie_output_embeddings()

    def compute_logits(self, hidden_states):
        return self.generator_lm_head(self.generator_predictions(hidden_states))
