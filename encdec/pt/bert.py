"""BERT as an encoder (`BertModel`) and as a cross-attending decoder (`BertLMHeadModel`).

Module attribute names follow transformers', so `state_dict()` keys are the
canonical names of `encdec.weights.names` (`encoder.layer.0.attention.self.query.weight`, ...).
RoBERTa and BertGeneration reuse these layers with their own embeddings and heads.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .common import (
    ACT2FN,
    BaseModelOutput,
    CausalLMOutput,
    _Linear,
    _attend,
    _fold_beams_attend,
    _KVCache,
    _padding_bias,
    causal_bias,
    check_input_ids,
)


def _padding_idx(config) -> Optional[int]:
    pad = config.pad_token_id
    if pad is None:
        return None
    if not 0 <= pad < config.vocab_size:
        raise ConfigError(
            f"{config.model_type}: pad_token_id {pad} is outside the vocabulary; expected 0 <= pad_token_id < "
            f"{config.vocab_size}"
        )
    return pad


class BertEmbeddings(nn.Module):
    """Word + token type + absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, h, padding_idx=_padding_idx(config))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, h)
        self.LayerNorm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _position_limit(self) -> int:
        """How many tokens (cache included) the position table covers."""
        return self.config.max_position_embeddings

    def _position_embeddings(self, input_ids, position_ids, past_length):
        if position_ids is None:
            # Positions past_length .. past_length + T - 1, the same for every row: [T, H].
            length = input_ids.shape[1]
            return self.position_embeddings.weight[past_length : past_length + length]
        return self.position_embeddings(position_ids)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, past_length: int = 0):
        embeddings = self.word_embeddings(input_ids)
        if token_type_ids is None:
            # All-zero token types: row 0 of the table, broadcast over [B, T].
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self._position_embeddings(input_ids, position_ids, past_length)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    """Multi-head attention; self-attention, or cross-attention over the encoder's states."""

    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = h // self.num_heads
        self.scale = self.head_dim**-0.5
        self.query = _Linear(h, h)
        self.key = _Linear(h, h)
        self.value = _Linear(h, h)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx

    def _heads(self, x):
        # [B, T, H*D] -> [B, H, T, D]
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        key_value_states=None,
        cache: Optional[_KVCache] = None,
        output_attentions: bool = False,
    ):
        b, t, _ = hidden_states.shape
        query = self._heads(self.query(hidden_states))
        if self.is_cross_attention:
            if cache is not None and cache.cross_keys[self.layer_idx] is not None:
                # The encoder output does not change while decoding: its keys/values are computed once.
                key, value = cache.cross_keys[self.layer_idx], cache.cross_values[self.layer_idx]
            else:
                key, value = self._heads(self.key(key_value_states)), self._heads(self.value(key_value_states))
                if cache is not None:
                    cache.set_cross(self.layer_idx, key, value)
        else:
            key, value = self._heads(self.key(hidden_states)), self._heads(self.value(hidden_states))
            if cache is not None:
                key, value = cache.update(self.layer_idx, key, value)
        dropout_p = self.dropout_prob if self.training else 0.0
        if key.shape[0] != b:
            out, probs = _fold_beams_attend(query, key, value, attention_bias, self.scale, output_attentions)
        else:
            out, probs = _attend(query, key, value, attention_bias, self.scale, dropout_p, is_causal, output_attentions)
        return out.transpose(1, 2).reshape(b, t, -1), probs  # [B, T, H*D]


class BertSelfOutput(nn.Module):
    """Output projection, dropout, residual, LayerNorm (post-LN)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = _Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config, is_cross_attention: bool = False, layer_idx: int = 0) -> None:
        super().__init__()
        self.self = BertSelfAttention(config, is_cross_attention, layer_idx)
        self.output = BertSelfOutput(config)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        key_value_states=None,
        cache=None,
        output_attentions: bool = False,
    ):
        context, probs = self.self(hidden_states, attention_bias, is_causal, key_value_states, cache, output_attentions)
        return self.output(context, hidden_states), probs


class BertIntermediate(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = _Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden_states):
        return self.act(self.dense(hidden_states))


class BertOutput(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = _Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(nn.Module):
    """Self-attention, cross-attention (decoders), feed-forward."""

    def __init__(self, config, layer_idx: int = 0) -> None:
        super().__init__()
        self.attention = BertAttention(config, layer_idx=layer_idx)
        if config.add_cross_attention:
            self.crossattention = BertAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions: bool = False,
    ):
        hidden_states, self_probs = self.attention(
            hidden_states, attention_bias, is_causal, cache=cache, output_attentions=output_attentions
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            if not hasattr(self, "crossattention"):
                raise ConfigError("encoder_hidden_states were given to a layer without cross-attention; expected a "
                                  "decoder config with add_cross_attention=True")
            hidden_states, cross_probs = self.crossattention(
                hidden_states, encoder_bias, False, encoder_hidden_states, cache, output_attentions
            )
        hidden_states = self.output(self.intermediate(hidden_states), hidden_states)
        return hidden_states, self_probs, cross_probs


class BertEncoder(nn.Module):
    """The stack of layers (transformers calls it the encoder in decoders too)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config, i) for i in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states,
        attention_bias=None,
        is_causal: bool = False,
        encoder_hidden_states=None,
        encoder_bias=None,
        cache=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_self = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for layer in self.layer:
            hidden_states, self_probs, cross_probs = layer(
                hidden_states, attention_bias, is_causal, encoder_hidden_states, encoder_bias, cache, output_attentions
            )
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_self += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        return hidden_states, all_hidden, all_self, all_cross


class BertPooler(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = _Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        # The first token's state: [B, T, H] -> [B, H].
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = _Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Transform, then the output projection whose bias is `bias` (one tensor, two names)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = _Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, hidden_states):
        return self.predictions(hidden_states)


class BertModel(nn.Module):
    """BERT body: embeddings, layers, and (as an encoder) the pooler.

    With `config.is_decoder` the self-attention is causal, a cache may be used,
    and with `config.add_cross_attention` each layer attends the encoder's states.
    """

    embeddings_class = BertEmbeddings
    has_token_types = True

    def __init__(self, config, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer and not config.is_decoder else None

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def _check_inputs(self, input_ids, attention_mask, token_type_ids, position_ids, past_length):
        cfg = self.config
        check_input_ids(input_ids, cfg.vocab_size, name="input_ids")
        batch, length = input_ids.shape
        if position_ids is None:
            limit = self.embeddings._position_limit()
            if past_length + length > limit:
                raise InputError(
                    f"input_ids has length {length} after {past_length} cached tokens; the position table of "
                    f"{cfg.model_type} covers {limit} tokens, expected at most {limit} in all"
                )
        else:
            if tuple(position_ids.shape) not in ((batch, length), (1, length)):
                raise InputError(
                    f"position_ids has shape {tuple(position_ids.shape)}; expected {(batch, length)} like input_ids"
                )
            check_input_ids(position_ids, cfg.max_position_embeddings, name="position_ids")
        if token_type_ids is not None:
            if not self.has_token_types:
                raise InputError(f"{cfg.model_type} has no token types; expected token_type_ids=None")
            if tuple(token_type_ids.shape) != (batch, length):
                raise InputError(
                    f"token_type_ids has shape {tuple(token_type_ids.shape)}; expected {(batch, length)} like input_ids"
                )
            check_input_ids(token_type_ids, cfg.type_vocab_size, name="token_type_ids")
        if attention_mask is not None:
            expected = (batch, past_length + length)
            if tuple(attention_mask.shape) != expected:
                raise InputError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected {expected} "
                    f"(batch, cached + new tokens)"
                )

    def _self_attention_bias(self, attention_mask, length, past_length, dtype, device):
        """(bias, is_causal) of the self-attention."""
        if not self.config.is_decoder:
            return _padding_bias(attention_mask, dtype), False
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: the plain causal pattern
        if attention_mask is None:
            if past_length == 0 and length > 1:
                return None, True  # plain causal: let SDPA build it
            if length == 1:
                return None, False  # one new token attends every cached one
        return causal_bias(length, past_length + length, past_length, attention_mask, dtype, device), False

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values: Optional[_KVCache] = None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        cfg = self.config
        cache = past_key_values
        if cfg.is_decoder:
            use_cache = cfg.use_cache if use_cache is None else use_cache
            if use_cache and cache is None:
                cache = _KVCache(cfg.num_hidden_layers)
        else:
            use_cache, cache = False, None
        past_length = cache.length if cache is not None else 0
        if cache is None or not cache.static:
            # A static cache is `generate`'s: it checked the lengths, and feeds back the model's own tokens.
            self._check_inputs(input_ids, attention_mask, token_type_ids, position_ids, past_length)
        length = input_ids.shape[1]

        if self.has_token_types:
            hidden = self.embeddings(input_ids, token_type_ids, position_ids, past_length)
        else:
            hidden = self.embeddings(input_ids, position_ids, past_length)
        dtype = hidden.dtype
        bias, is_causal = self._self_attention_bias(attention_mask, length, past_length, dtype, hidden.device)
        encoder_bias = None
        if encoder_attention_mask is not None:
            # A 4D mask is an additive bias already (generate prepares it once).
            encoder_bias = (
                encoder_attention_mask if encoder_attention_mask.dim() == 4 else _padding_bias(encoder_attention_mask, dtype)
            )
        hidden, all_hidden, all_self, all_cross = self.encoder(
            hidden, bias, is_causal, encoder_hidden_states, encoder_bias, cache, output_attentions, output_hidden_states
        )
        if cache is not None:
            cache.advance(length)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        out = BaseModelOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            past_key_values=cache if use_cache else None,
            hidden_states=all_hidden,
            attentions=all_self,
            cross_attentions=all_cross,
        )
        return out if return_dict else out.to_tuple()


def _causal_lm_loss(logits, labels):
    """Next-token cross-entropy: position t predicts label t + 1; -100 is ignored."""
    # [B, T] -> [B, T] shifted left, the last position gets -100
    shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100)


def _causal_lm_output(model, base_output, labels, logits_to_keep: int, return_dict: bool):
    """A decoder's output from its base model's: logits of the last `logits_to_keep`
    positions (all when 0), the loss when `labels` are given, and the base outputs."""
    hidden = base_output.last_hidden_state
    if logits_to_keep:
        hidden = hidden[:, -logits_to_keep:]  # only the positions whose logits are needed
    logits = model.compute_logits(hidden)
    result = CausalLMOutput(
        loss=_causal_lm_loss(logits, labels) if labels is not None else None,
        logits=logits,
        past_key_values=base_output.past_key_values,
        hidden_states=base_output.hidden_states,
        attentions=base_output.attentions,
        cross_attentions=base_output.cross_attentions,
    )
    return result if return_dict else result.to_tuple()


class BertLMHeadModel(nn.Module):
    """A BERT decoder with its LM head; the head's projection is the word embeddings when tied."""

    base_model_prefix = "bert"

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        if config.tie_word_embeddings:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    @property
    def base_model(self) -> BertModel:
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self):
        return self.base_model.embeddings.word_embeddings

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def compute_logits(self, hidden_states):
        """The LM head: `[..., H]` -> `[..., V]`."""
        return self.cls(hidden_states)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        labels=None,
        logits_to_keep: int = 0,
        return_dict: bool = True,
    ):
        kwargs = dict(
            attention_mask=attention_mask,
            position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.base_model(input_ids, **kwargs)
        return _causal_lm_output(self, out, labels, logits_to_keep, return_dict)
