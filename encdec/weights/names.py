"""Parameter specs: every tensor a config implies, by name, in each framework's layout.

The canonical name and layout are transformers' PyTorch `state_dict` ones
(`[out, in]` dense weights, GPT-2 Conv1D `[in, out]`). Each `ParamSpec` also
carries the name the tensor has in a TF `tf_model.h5` and in Flax params, and the
`kind` that decides how its layout changes between them. This table is the only
place names are made; conversion looks tensors up in it and never rewrites a
name by string replacement.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable

import numpy as np

from ..config import ArchConfig, EncoderDecoderConfig
from ..errors import ConfigError

# kind -> (TF layout, Flax layout), each relative to the canonical (PyTorch) one.
#   "same": identical; "T": transposed (rank 2); "row": reshaped to [1, n].
KIND_LAYOUTS = {
    "dense": ("T", "T"),  # torch.nn.Linear [out, in]; TF/Flax kernels are [in, out]
    "conv1d": ("same", "T"),  # GPT-2 Conv1D [in, out] in PyTorch and TF; Flax [out, in]
    "conv1d_bias": ("row", "same"),  # TF GPT-2 Conv1D bias is [1, out]
    "embedding": ("same", "same"),
    # RemBERT's output embeddings [V, E]: the same layout everywhere, but a projection (PyTorch's nn.Linear),
    # not an embedding table (num_parameters(exclude_embeddings=True) keeps it, as transformers does).
    "output_embedding": ("same", "same"),
    "norm_weight": ("same", "same"),
    "norm_bias": ("same", "same"),
    "bias": ("same", "same"),
}

# The Keras instance name transformers' TF class is saved under; its first scope.
TF_ROOT_SCOPE = "tf_encoder_decoder_model"

# Tensors a transformers checkpoint may hold that no model parameter takes.
IGNORED = (
    (re.compile(r"(^|\.)embeddings\.position_ids$"), "a non-persistent buffer (position ids 0..n-1)"),
    (re.compile(r"(^|\.)embeddings\.token_type_ids$"), "a non-persistent buffer (zero token types)"),
    (re.compile(r"\.(attn|crossattention)\.(bias|masked_bias)$"), "GPT-2's causal-mask buffer, rebuilt at run time"),
    # A BartForConditionalGeneration checkpoint loaded as a BART decoder: its encoder half and its output
    # bias, which BartForCausalLM has no place for (transformers leaves them out as well).
    (re.compile(r"^model[./]encoder[./]"), "the encoder half of a BART checkpoint: BART is a decoder only here"),
    (re.compile(r"^final_logits_bias$"), "BartForConditionalGeneration's output bias: BartForCausalLM has none"),
)


def ignored_reason(name: str) -> str | None:
    """Why a checkpoint tensor that is not a parameter may be skipped, or None."""
    for pattern, reason in IGNORED:
        if pattern.search(name):
            return reason
    return None


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One stored parameter: its canonical name and shape, and where it lives in TF and Flax."""

    name: str
    shape: tuple[int, ...]
    kind: str
    tf_name: str  # h5 weight name without the root scope and the ":0" suffix
    flax_path: str  # "/"-joined keys of the nested Flax params dict

    @property
    def tf_shape(self) -> tuple[int, ...]:
        return _layout_shape(self.shape, KIND_LAYOUTS[self.kind][0])

    @property
    def flax_shape(self) -> tuple[int, ...]:
        return _layout_shape(self.shape, KIND_LAYOUTS[self.kind][1])

    def to_tf(self, array: np.ndarray) -> np.ndarray:
        return _to_layout(array, KIND_LAYOUTS[self.kind][0])

    def from_tf(self, array: np.ndarray) -> np.ndarray:
        return _from_layout(array, KIND_LAYOUTS[self.kind][0], self.shape)

    def to_flax(self, array: np.ndarray) -> np.ndarray:
        return _to_layout(array, KIND_LAYOUTS[self.kind][1])

    def from_flax(self, array: np.ndarray) -> np.ndarray:
        return _from_layout(array, KIND_LAYOUTS[self.kind][1], self.shape)

    def shape_in(self, layout: str) -> tuple[int, ...]:
        """The shape this tensor has in `layout` ("pt", "tf" or "flax")."""
        return _layout_shape(self.shape, self._change(layout))

    def native_name(self, layout: str) -> str:
        """This tensor's name in `layout`: canonical, TF (`tf_name`) or Flax (`flax_path`)."""
        return {"pt": self.name, "tf": self.tf_name, "flax": self.flax_path}[layout]

    def to_native(self, array: np.ndarray, layout: str) -> np.ndarray:
        """A canonical array in `layout`'s layout."""
        return _to_layout(array, self._change(layout))

    def to_canonical(self, array: np.ndarray, layout: str) -> np.ndarray:
        """An array in `layout`'s layout, back in the canonical one."""
        return _from_layout(array, self._change(layout), self.shape)

    def _change(self, layout: str) -> str:
        """How `layout` differs from the canonical layout for this tensor's kind."""
        if layout == "pt":
            return "same"
        return KIND_LAYOUTS[self.kind][{"tf": 0, "flax": 1}[layout]]


@dataclasses.dataclass(frozen=True)
class TiedSpec:
    """A canonical name that is not stored: it is the same tensor as `source`.

    `param` is the tied tensor's own spec (its TF and Flax names) when the
    frameworks give it a variable of its own, as they do for the decoder's copy
    of a tensor shared by `tie_encoder_decoder`; None for an LM head tied to the
    word embeddings, which only PyTorch state dicts name.
    """

    name: str
    source: str
    reason: str
    param: ParamSpec | None = None

    @property
    def shared_with_encoder(self) -> bool:
        """Whether this is the decoder's copy of a tensor shared by `tie_encoder_decoder`."""
        return self.param is not None


def _layout_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    if layout == "T":
        return tuple(reversed(shape))
    if layout == "row":
        return (1,) + tuple(shape)
    return tuple(shape)


def _to_layout(array: np.ndarray, layout: str) -> np.ndarray:
    if layout == "T":
        return np.ascontiguousarray(array.T)
    if layout == "row":
        return array.reshape((1,) + array.shape)
    return array


def _from_layout(array: np.ndarray, layout: str, shape: tuple[int, ...]) -> np.ndarray:
    if layout == "T":
        return np.ascontiguousarray(array.T)
    if layout == "row":
        return array.reshape(shape)
    return array


class ModelSpec:
    """The parameters of one model, indexed by canonical, TF and Flax name."""

    def __init__(self, params: Iterable[ParamSpec], tied: Iterable[TiedSpec] = ()) -> None:
        self.params = list(params)
        self.tied = list(tied)
        self.by_name = {p.name: p for p in self.params}
        self.by_tf = {p.tf_name: p for p in self.params}
        self.by_flax = {p.flax_path: p for p in self.params}
        self.tied_by_name = {t.name: t for t in self.tied}
        for index, label in ((self.by_name, "canonical"), (self.by_tf, "TF"), (self.by_flax, "Flax")):
            if len(index) != len(self.params):
                raise AssertionError(f"duplicate {label} names in a parameter spec")

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):
        return iter(self.params)

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(p.shape)) for p in self.params))

    def state_dict_names(self) -> list[str]:
        """Every name of the PyTorch `state_dict`, tied ones included."""
        return [p.name for p in self.params] + [t.name for t in self.tied]

    def stored_name(self, name: str) -> str:
        """The stored parameter a canonical name holds: itself, or the source of a tied name."""
        if name in self.by_name:
            return name
        if name in self.tied_by_name:
            return self.tied_by_name[name].source
        raise KeyError(f"{name!r} is not a parameter name of this model")

    def param(self, name: str) -> ParamSpec:
        """The spec of any canonical name: a stored one, or a tied one the frameworks name
        (`tie_encoder_decoder`); a tied name only PyTorch knows (an LM head) gives its source's spec."""
        if name in self.by_name:
            return self.by_name[name]
        tied = self.tied_by_name.get(name)
        if tied is None:
            raise KeyError(f"{name!r} is not a parameter name of this model")
        return tied.param if tied.param is not None else self.by_name[tied.source]

    def tf_name(self, name: str) -> str:
        """The TF weight name (no root scope, no `:0`) of any canonical name."""
        return self.param(name).tf_name

    def flax_path(self, name: str) -> str:
        """The "/"-joined Flax params path of any canonical name."""
        return self.param(name).flax_path

    def native_name(self, name: str, layout: str) -> str:
        """The name of any canonical name in `layout` ("pt", "tf" or "flax")."""
        return name if layout == "pt" else self.param(name).native_name(layout)

    def tied_pairs(self, shared_with_encoder: bool | None = None) -> list[tuple[str, str]]:
        """(tied name, stored source) pairs; `shared_with_encoder` picks the `tie_encoder_decoder` ones (True)
        or the others (False), None all."""
        return [
            (t.name, t.source)
            for t in self.tied
            if shared_with_encoder is None or t.shared_with_encoder == shared_with_encoder
        ]

    def names_of(self, stored: str) -> list[str]:
        """A stored name and every tied name that holds the same tensor."""
        return [stored] + [t.name for t in self.tied if t.source == stored]

    def decoder_copies(self) -> dict[str, str]:
        """With `tie_encoder_decoder`: each stored encoder name the decoder's body shares -> the decoder's
        (tied) name of it; empty otherwise."""
        return {source: name for name, source in self.tied_pairs(shared_with_encoder=True)}


class _Scope:
    """Three parallel prefixes: canonical (dots), TF (slashes, `layer_._i`), Flax (slashes)."""

    def __init__(self, pt: str = "", tf: str = "", flax: str = "") -> None:
        self.pt, self.tf, self.flax = pt, tf, flax

    def child(self, pt: str | None, tf: str | None = None, flax: str | None = None) -> "_Scope":
        tf = pt if tf is None else tf
        flax = pt if flax is None else flax
        return _Scope(_join(self.pt, pt, "."), _join(self.tf, tf, "/"), _join(self.flax, flax, "/"))

    def param(self, pt_leaf: str, tf_leaf: str, flax_leaf: str, shape, kind: str) -> ParamSpec:
        return ParamSpec(
            name=_join(self.pt, pt_leaf, "."),
            shape=tuple(int(s) for s in shape),
            kind=kind,
            tf_name=_join(self.tf, tf_leaf, "/"),
            flax_path=_join(self.flax, flax_leaf, "/"),
        )


def _join(prefix: str, leaf: str, sep: str) -> str:
    if not leaf:
        return prefix
    return f"{prefix}{sep}{leaf}" if prefix else leaf


def _dense(scope: _Scope, n_in: int, n_out: int, bias: bool = True) -> list[ParamSpec]:
    out = [scope.param("weight", "kernel", "kernel", (n_out, n_in), "dense")]
    if bias:
        out.append(scope.param("bias", "bias", "bias", (n_out,), "bias"))
    return out


def _conv1d(scope: _Scope, n_in: int, n_out: int) -> list[ParamSpec]:
    return [
        scope.param("weight", "weight", "kernel", (n_in, n_out), "conv1d"),
        scope.param("bias", "bias", "bias", (n_out,), "conv1d_bias"),
    ]


def _layer_norm(scope: _Scope, n: int) -> list[ParamSpec]:
    return [
        scope.param("weight", "gamma", "scale", (n,), "norm_weight"),
        scope.param("bias", "beta", "bias", (n,), "norm_bias"),
    ]


def _embedding(scope: _Scope, rows: int, width: int, tf_leaf: str = "embeddings") -> list[ParamSpec]:
    return [scope.param("weight", tf_leaf, "embedding", (rows, width), "embedding")]


# ---------------------------------------------------------------------------
# BERT, RoBERTa, BertGeneration, ELECTRA and RemBERT share one body.


def embedding_width(cfg: ArchConfig) -> int:
    """The width of an architecture's embedding tables: ELECTRA's `embedding_size`, RemBERT's
    `input_embedding_size`, else `hidden_size`."""
    if cfg.architecture == "electra":
        return cfg.embedding_size
    if cfg.architecture == "rembert":
        return cfg.input_embedding_size
    return cfg.hidden_size


def has_embeddings_project(cfg: ArchConfig) -> bool:
    """Whether ELECTRA's `embeddings_project` (embedding width -> hidden size) exists: only when they differ."""
    return cfg.architecture == "electra" and cfg.embedding_size != cfg.hidden_size


def _bert_embeddings(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    h = embedding_width(cfg)
    emb = scope.child("embeddings")
    # transformers' TF BERT names the word table "weight", the others "embeddings".
    out = _embedding(emb.child("word_embeddings"), cfg.vocab_size, h, tf_leaf="weight")
    out += _embedding(emb.child("position_embeddings"), cfg.max_position_embeddings, h)
    if cfg.architecture != "bert-generation":
        out += _embedding(emb.child("token_type_embeddings"), cfg.type_vocab_size, h)
    out += _layer_norm(emb.child("LayerNorm"), h)
    if has_embeddings_project(cfg):
        out += _dense(scope.child("embeddings_project"), h, cfg.hidden_size)
    return out


def _bert_attention(scope: _Scope, h: int) -> list[ParamSpec]:
    out = []
    for proj in ("query", "key", "value"):
        out += _dense(scope.child("self").child(proj), h, h)
    out += _dense(scope.child("output").child("dense"), h, h)
    out += _layer_norm(scope.child("output").child("LayerNorm"), h)
    return out


def _bert_layers(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    h, inner = cfg.hidden_size, cfg.intermediate_size
    out = []
    if cfg.architecture == "rembert":
        # RemBERT projects its embeddings to the layers' width before the first layer.
        out += _dense(scope.child("encoder").child("embedding_hidden_mapping_in"), embedding_width(cfg), h)
    for i in range(cfg.num_hidden_layers):
        layer = scope.child("encoder").child(f"layer.{i}", f"layer_._{i}", f"layer/{i}")
        out += _bert_attention(layer.child("attention"), h)
        if cfg.add_cross_attention:
            out += _bert_attention(layer.child("crossattention"), h)
        out += _dense(layer.child("intermediate").child("dense"), h, inner)
        out += _dense(layer.child("output").child("dense"), inner, h)
        out += _layer_norm(layer.child("output").child("LayerNorm"), h)
    return out


def _has_pooler(cfg: ArchConfig) -> bool:
    # Encoders keep transformers' pooler (it is in their checkpoints); decoders have none.
    return cfg.architecture in ("bert", "roberta", "rembert") and not cfg.is_decoder


def _bert_body(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    out = _bert_embeddings(scope, cfg) + _bert_layers(scope, cfg)
    if _has_pooler(cfg):
        out += _dense(scope.child("pooler").child("dense"), cfg.hidden_size, cfg.hidden_size)
    return out


def _bert_lm_head(scope: _Scope, cfg: ArchConfig, body: _Scope) -> tuple[list[ParamSpec], list[TiedSpec]]:
    """The LM head of BertLMHeadModel / RobertaForCausalLM / BertGenerationDecoder / ElectraForCausalLM."""
    h, v = cfg.hidden_size, cfg.vocab_size
    word = body.child("embeddings").child("word_embeddings")
    if cfg.architecture == "electra":
        return _electra_generator_head(scope, cfg, word)
    if cfg.architecture == "rembert":
        return _rembert_lm_head(scope, cfg), []
    if cfg.architecture == "bert":
        head = scope.child("cls.predictions", "mlm___cls/predictions", "cls/predictions")
        transform = head.child("transform")
        params = _dense(transform.child("dense"), h, h) + _layer_norm(transform.child("LayerNorm"), h)
        params.append(head.param("bias", "bias", "bias", (v,), "bias"))
    elif cfg.architecture == "roberta":
        head = scope.child("lm_head")
        params = _dense(head.child("dense"), h, h) + _layer_norm(head.child("layer_norm"), h)
        params.append(head.param("bias", "bias", "bias", (v,), "bias"))
    else:  # bert-generation: the head is a single projection
        head = scope.child("lm_head")
        params = [head.param("bias", "bias", "bias", (v,), "bias")]
    decoder = head.child("decoder")
    tied = [TiedSpec(decoder.pt + ".bias", head.pt + ".bias", "the LM head's bias is the output bias")]
    if cfg.tie_word_embeddings:
        tied.append(TiedSpec(decoder.pt + ".weight", word.pt + ".weight", "the LM head is tied to the word embeddings"))
    else:
        params.insert(0, decoder.param("weight", "kernel", "kernel", (v, h), "dense"))
    return params, tied


def _electra_generator_head(scope: _Scope, cfg: ArchConfig, word: _Scope) -> tuple[list[ParamSpec], list[TiedSpec]]:
    """ElectraForCausalLM's head: `generator_predictions` (dense hidden -> embedding width, gelu,
    LayerNorm), then `generator_lm_head` (embedding width -> vocabulary, its own bias), whose weight
    is the word embeddings when tied. transformers has no TF ELECTRA decoder; the TF names are those
    of TFElectraForMaskedLM's generator head, an untied projection being `generator_lm_head/kernel`
    (as in Flax)."""
    e, v = cfg.embedding_size, cfg.vocab_size
    predictions = scope.child("generator_predictions")
    # transformers' order: LayerNorm is made before the dense layer.
    params = _layer_norm(predictions.child("LayerNorm"), e) + _dense(predictions.child("dense"), cfg.hidden_size, e)
    head = scope.child("generator_lm_head")
    tied = []
    if cfg.tie_word_embeddings:
        tied.append(TiedSpec(head.pt + ".weight", word.pt + ".weight", "the LM head is tied to the word embeddings"))
    else:
        params.append(head.param("weight", "kernel", "kernel", (v, e), "dense"))
    params.append(head.param("bias", "bias", "bias", (v,), "bias"))
    return params, tied


def _rembert_lm_head(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    """RemBertForCausalLM's head: dense to `output_embedding_size`, activation, LayerNorm, then the output
    embeddings `[V, output_embedding_size]` with their own bias, untied.

    transformers' TF class stores the output embeddings as `decoder/weight` `[V, E]` (PyTorch's layout);
    transformers had no Flax RemBERT, so the Flax names follow Flax BERT's (`cls/predictions/...`),
    the table kept `[V, E]` as `decoder/embedding`, the layout of a Flax `nn.Embed`.
    """
    e, v = cfg.output_embedding_size, cfg.vocab_size
    head = scope.child("cls.predictions", "mlm___cls/predictions", "cls/predictions")
    params = _dense(head.child("dense"), cfg.hidden_size, e) + _layer_norm(head.child("LayerNorm"), e)
    decoder = head.child("decoder")
    params.append(decoder.param("weight", "weight", "embedding", (v, e), "output_embedding"))
    params.append(decoder.param("bias", "bias", "bias", (v,), "bias"))
    return params


def _gpt2_body(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    h, inner = cfg.n_embd, cfg.inner_size
    out = _embedding(scope.child("wte"), cfg.vocab_size, h) + _embedding(scope.child("wpe"), cfg.n_positions, h)
    for i in range(cfg.n_layer):
        block = scope.child(f"h.{i}", f"h_._{i}", f"h/{i}")
        out += _layer_norm(block.child("ln_1"), h)
        out += _conv1d(block.child("attn").child("c_attn"), h, 3 * h)
        out += _conv1d(block.child("attn").child("c_proj"), h, h)
        out += _layer_norm(block.child("ln_2"), h)
        if cfg.add_cross_attention:
            out += _conv1d(block.child("crossattention").child("c_attn"), h, 2 * h)
            out += _conv1d(block.child("crossattention").child("q_attn"), h, h)
            out += _conv1d(block.child("crossattention").child("c_proj"), h, h)
            out += _layer_norm(block.child("ln_cross_attn"), h)
        out += _conv1d(block.child("mlp").child("c_fc"), h, inner)
        out += _conv1d(block.child("mlp").child("c_proj"), inner, h)
    out += _layer_norm(scope.child("ln_f"), h)
    return out


def _bart_attention(scope: _Scope, h: int) -> list[ParamSpec]:
    out = []
    for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
        out += _dense(scope.child(proj), h, h)
    return out


def _bart_body(scope: _Scope, cfg: ArchConfig) -> list[ParamSpec]:
    """BART's decoder (`BartDecoder`): token and position tables (max_position_embeddings + 2 rows),
    the embeddings' LayerNorm, post-LayerNorm layers. TF names follow transformers' TF BART layers
    (`layers.{i}`, `embed_tokens/embeddings`)."""
    h, inner = cfg.d_model, cfg.decoder_ffn_dim
    out = _embedding(scope.child("embed_tokens"), cfg.vocab_size, h)
    out += _embedding(scope.child("embed_positions"), cfg.position_table_size, h)
    for i in range(cfg.decoder_layers):
        layer = scope.child(f"layers.{i}", f"layers.{i}", f"layers/{i}")
        out += _bart_attention(layer.child("self_attn"), h)
        out += _layer_norm(layer.child("self_attn_layer_norm"), h)
        # transformers' BartDecoderLayer always has its cross-attention, add_cross_attention or not.
        out += _bart_attention(layer.child("encoder_attn"), h)
        out += _layer_norm(layer.child("encoder_attn_layer_norm"), h)
        out += _dense(layer.child("fc1"), h, inner)
        out += _dense(layer.child("fc2"), inner, h)
        out += _layer_norm(layer.child("final_layer_norm"), h)
    out += _layer_norm(scope.child("layernorm_embedding"), h)
    return out


# The attribute each decoder class keeps its base model under (PyTorch, TF and Flax alike). BART's is
# `model` (transformers' BartDecoderWrapper), which holds the `BartDecoder` as `decoder`.
BASE_MODEL_PREFIX = {"bert": "bert", "roberta": "roberta", "bert-generation": "bert", "electra": "electra",
                     "rembert": "rembert", "gpt2": "transformer", "bart": "model"}
# Architectures that are decoders only: no encoder spec.
_DECODER_ONLY = ("gpt2", "bart")


def encoder_spec(cfg: ArchConfig, scope: _Scope | None = None) -> ModelSpec:
    """A bare encoder (BertModel, RobertaModel, BertGenerationEncoder, ElectraModel), as transformers names it.

    Standalone, PyTorch and Flax names have no base prefix; TF names always have the
    main layer (`bert/...`).
    """
    if cfg.architecture in _DECODER_ONLY:
        raise ConfigError(
            f"{cfg.architecture} cannot be the encoder (encdec uses it as a decoder only); expected one of "
            "bert, roberta, xlm-roberta, camembert, bert-generation, electra, rembert"
        )
    scope = scope or _Scope()
    base = BASE_MODEL_PREFIX[cfg.architecture]
    return ModelSpec(_bert_body(scope.child("", base, ""), cfg))


def decoder_spec(cfg: ArchConfig, scope: _Scope | None = None) -> ModelSpec:
    """A decoder with its LM head (BertLMHeadModel, RobertaForCausalLM, GPT2LMHeadModel,
    BertGenerationDecoder, ElectraForCausalLM, BartForCausalLM), as transformers names it."""
    scope = scope or _Scope()
    base = BASE_MODEL_PREFIX[cfg.architecture]
    body = scope.child(base)
    if cfg.architecture in ("gpt2", "bart"):
        # A bias-free LM head `lm_head`, tied to the token table unless the config unties it.
        if cfg.architecture == "gpt2":
            params, word = _gpt2_body(body, cfg), body.pt + ".wte.weight"
        else:
            params, word = _bart_body(body.child("decoder"), cfg), body.pt + ".decoder.embed_tokens.weight"
        head = scope.child("lm_head")
        if cfg.tie_word_embeddings:
            tied = [TiedSpec(head.pt + ".weight", word, "the LM head is tied to the word embeddings")]
        else:
            tied = []
            params += [head.param("weight", "kernel", "kernel", (cfg.vocab_size, cfg.hidden_size), "dense")]
        return ModelSpec(params, tied)
    head_params, tied = _bert_lm_head(scope, cfg, body)
    return ModelSpec(_bert_body(body, cfg) + head_params, tied)


def model_spec(config: EncoderDecoderConfig) -> ModelSpec:
    """Every parameter of an EncoderDecoderModel, in transformers' order."""
    enc_scope = _Scope("encoder", "encoder", "encoder")
    dec_scope = _Scope("decoder", "decoder", "decoder")
    encoder = encoder_spec(config.encoder, enc_scope)
    decoder = decoder_spec(config.decoder, dec_scope)
    params = list(encoder.params)
    tied = list(decoder.tied)
    if config.tie_encoder_decoder:
        # The decoder's base model shares every tensor it has in common with the encoder.
        base = BASE_MODEL_PREFIX[config.decoder.architecture]
        enc_prefix, dec_prefix = "encoder.", f"decoder.{base}."
        for p in decoder.params:
            source = enc_prefix + p.name[len(dec_prefix):] if p.name.startswith(dec_prefix) else None
            if source in encoder.by_name:
                tied.append(TiedSpec(p.name, source, "tie_encoder_decoder: shared with the encoder", p))
            else:
                params.append(p)
    else:
        params += decoder.params
    if config.needs_projection:
        params += _dense(_Scope().child("enc_to_dec_proj"), config.encoder.hidden_size, config.decoder.hidden_size)
    # A tie to a tied name resolves to the stored tensor.
    stored = {p.name for p in params}
    by_name = {t.name: t for t in tied}
    resolved = []
    for t in tied:
        source = t.source
        while source not in stored and source in by_name:
            source = by_name[source].source
        resolved.append(dataclasses.replace(t, source=source))
    return ModelSpec(params, resolved)


def word_embedding_name(cfg: ArchConfig, role: str = "decoder", prefix: str | None = None) -> str:
    """The canonical name of the word embedding table of an encoder or decoder.

    Names are those of `encoder_spec` / `decoder_spec`, under `prefix` (default:
    the role, as in `model_spec`; "" for a standalone component).
    """
    prefix = role if prefix is None else prefix
    if role == "encoder":
        leaf = "embeddings.word_embeddings.weight"
    elif role == "decoder":
        base = BASE_MODEL_PREFIX[cfg.architecture]
        leaf = {"gpt2": f"{base}.wte.weight", "bart": f"{base}.decoder.embed_tokens.weight"}.get(
            cfg.architecture, f"{base}.embeddings.word_embeddings.weight")
    else:
        raise ConfigError(f"role {role!r}; expected 'encoder' or 'decoder'")
    return _join(prefix, leaf, ".")


def output_projection_name(cfg: ArchConfig, prefix: str = "decoder") -> str:
    """The canonical name of a decoder's `[vocab, hidden]` LM head projection (tied or not)."""
    leaf = {
        "bert": "cls.predictions.decoder.weight",
        "roberta": "lm_head.decoder.weight",
        "bert-generation": "lm_head.decoder.weight",
        "electra": "generator_lm_head.weight",
        "rembert": "cls.predictions.decoder.weight",
        "gpt2": "lm_head.weight",
        "bart": "lm_head.weight",
    }.get(cfg.architecture)
    if leaf is None:
        raise ConfigError(f"model_type {cfg.architecture!r} has no LM head here; expected one of {sorted(BASE_MODEL_PREFIX)}")
    return _join(prefix, leaf, ".")


def component_alternate_params(cfg: ArchConfig, role: str) -> list[ParamSpec]:
    """The body parameters of a standalone encoder or decoder named with the base prefix toggled.

    A component checkpoint may come from the bare model (`BertModel`: no prefix)
    or from a model with a head (`BertLMHeadModel`, `BertForMaskedLM`: `bert.`),
    whatever role it is loaded for. These are the same tensors as in
    `encoder_spec(cfg)` / `decoder_spec(cfg)` under the other naming; their TF
    names (which always carry the main layer) are those of the role's spec.
    """
    base = BASE_MODEL_PREFIX[cfg.architecture]
    if role == "encoder":
        return encoder_spec(cfg, _Scope(base, "", base)).params
    if role != "decoder":
        raise ConfigError(f"role {role!r}; expected 'encoder' or 'decoder'")
    if cfg.architecture == "gpt2":
        return _gpt2_body(_Scope("", base, ""), cfg)
    if cfg.architecture == "bart":
        # A BartForConditionalGeneration / BartModel checkpoint names the decoder's layers as
        # BartForCausalLM does; only its token table is the shared `model.shared` (the TF name pairs it).
        embed = decoder_spec(cfg).by_name[f"{base}.decoder.embed_tokens.weight"]
        return [ParamSpec(f"{base}.shared.weight", embed.shape, embed.kind, embed.tf_name, f"{base}/shared/embedding")]
    return encoder_spec(cfg).params  # the body alone: a decoder config has no pooler


# Token tables whose padding row transformers initialises to zero (its nn.Embedding padding_idx).
_WORD_TABLES = ("word_embeddings.weight", "embed_tokens.weight")


def init_weights(config: EncoderDecoderConfig | ArchConfig, seed: int = 0, role: str = "model") -> dict[str, np.ndarray]:
    """A whole random model in numpy (float32), the same bit for bit in every framework.

    Dense, Conv1D and embedding weights ~ N(0, initializer_range), biases and
    LayerNorm offsets 0, LayerNorm scales 1, as transformers initialises them;
    the padding row of word embeddings is zero. `role` picks the spec for a bare
    architecture config: "encoder" or "decoder".
    """
    if isinstance(config, EncoderDecoderConfig):
        spec = model_spec(config)
        pad_ids = {"encoder.": config.encoder.pad_token_id, "decoder.": config.decoder.pad_token_id}
        ranges = {"encoder.": config.encoder.initializer_range, "decoder.": config.decoder.initializer_range}
    else:
        spec = encoder_spec(config) if role == "encoder" else decoder_spec(config)
        pad_ids = {"": config.pad_token_id}
        ranges = {"": config.initializer_range}
    rng = np.random.default_rng(seed)
    out = {}
    for p in spec:
        prefix = next((k for k in ranges if p.name.startswith(k)), None)
        std = ranges[prefix] if prefix is not None else max(ranges.values())
        if p.kind in ("dense", "conv1d", "embedding", "output_embedding"):
            value = rng.standard_normal(p.shape, dtype=np.float32) * np.float32(std)
            pad = pad_ids.get(prefix) if prefix is not None else None
            if p.name.endswith(_WORD_TABLES) and pad is not None and 0 <= pad < p.shape[0]:
                value[pad] = 0.0
        elif p.kind == "norm_weight":
            value = np.ones(p.shape, np.float32)
        else:
            value = np.zeros(p.shape, np.float32)
        out[p.name] = value
    return out


def vocab_changes(config: EncoderDecoderConfig, new_num_tokens: int) -> bool:
    """Whether a decoder vocabulary of `new_num_tokens` differs from `config`'s; ConfigError unless
    `new_num_tokens` is a positive int."""
    if not isinstance(new_num_tokens, int) or new_num_tokens <= 0:
        raise ConfigError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
    return new_num_tokens != config.decoder.vocab_size


def resize_decoder_vocab(
    config: EncoderDecoderConfig, state: dict[str, np.ndarray], new_num_tokens: int
) -> tuple[EncoderDecoderConfig, dict[str, np.ndarray]]:
    """A copy of `config` whose decoder (and, when tied, encoder) vocabulary has
    `new_num_tokens` entries, and `state` fitted to it.

    Vocabulary-sized tensors ([V, H] tables, [V] biases) keep their overlapping rows;
    new rows, and any parameter `state` lacks, are drawn as `init_weights(config, 0)` draws them.
    """
    config = config.copy()
    config.decoder.vocab_size = new_num_tokens
    if config.tie_encoder_decoder:
        config.encoder.vocab_size = new_num_tokens
    resized = {}
    for name, fresh in init_weights(config, seed=0).items():
        value = state.get(name)
        if value is None:
            resized[name] = fresh
        elif value.shape == fresh.shape:
            resized[name] = value
        else:
            rows = min(value.shape[0], fresh.shape[0])
            merged = fresh.astype(value.dtype, copy=True)
            merged[:rows] = value[:rows]
            resized[name] = merged
    return config, resized


def expand_tied(spec: ModelSpec, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stored tensors plus every tied name pointing at its source (no copies)."""
    full = dict(state)
    for t in spec.tied:
        full[t.name] = state[t.source]
    return full
