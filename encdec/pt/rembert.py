"""RemBERT: BERT's layers over narrower input embeddings, projected to the layers' width
(`encoder.embedding_hidden_mapping_in`), and an LM head with output embeddings of their own.

`RemBertModel` (encoder) and `RemBertForCausalLM` (decoder), as transformers names them;
the attention, layers and pooler are BERT's.
"""

from __future__ import annotations

from torch import nn

from .bert import BertEncoder, BertLMHeadModel, BertModel
from .common import ACT2FN
from .fast_linear import Linear


class RemBertEncoder(BertEncoder):
    """BERT's layer stack after a projection of the embeddings to `hidden_size`; the first hidden state
    returned is the projected one, as in transformers."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.embedding_hidden_mapping_in = Linear(config.input_embedding_size, config.hidden_size)

    def forward(self, hidden_states, *args, **kwargs):
        # [B, T, input_embedding_size] -> [B, T, hidden_size]
        return super().forward(self.embedding_hidden_mapping_in(hidden_states), *args, **kwargs)


class RemBertLMPredictionHead(nn.Module):
    """Dense to `output_embedding_size`, activation, LayerNorm, then the output embeddings and their bias."""

    def __init__(self, config) -> None:
        super().__init__()
        e = config.output_embedding_size
        self.dense = Linear(config.hidden_size, e)
        self.decoder = Linear(e, config.vocab_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class RemBertOnlyMLMHead(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.predictions = RemBertLMPredictionHead(config)

    def forward(self, hidden_states):
        return self.predictions(hidden_states)


class RemBertModel(BertModel):
    """The RemBERT body: embeddings, their projection and the layers, and (as an encoder) the pooler."""

    encoder_class = RemBertEncoder


class RemBertForCausalLM(BertLMHeadModel):
    """A RemBERT decoder with its LM head (untied output embeddings)."""

    base_model_prefix = "rembert"

    def __init__(self, config) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.rembert = RemBertModel(config, add_pooling_layer=False)
        self.cls = RemBertOnlyMLMHead(config)

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]` (never tied to the input embeddings)."""
        return self.cls(hidden_states)
