"""The three ports mirror each other: the same files, classes in the same order, the same methods.

A class is named as in the PyTorch port, prefixed `TF` / `Flax` in the other two.
`forward` (PyTorch), `call` (Keras) and `__call__` (Linen) are the same method;
constructors and framework hooks (`__init__`, `setup`, `build`) are not compared.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PORTS = {"pt": "", "tf": "TF", "flax": "Flax"}
FILES = (
    "common.py",
    "bert.py",
    "roberta.py",
    "bert_generation.py",
    "electra.py",
    "rembert.py",
    "gpt2.py",
    "bart.py",
    "encoder_decoder.py",
    "generation.py",
    "pretrained.py",
)
# Not mirrored, each for its reason: pt/fast_linear.py (oneDNN, PyTorch on the CPU only), flax/training.py
# (optax), and distributed.py in every port, whose public names follow each framework's own engine
# (DDP/FSDP2, Keras distribution strategies, JAX meshes: docs/distributed.md).
ROOT = pathlib.Path(__file__).resolve().parents[1] / "encdec"
SAME_METHOD = {"forward": "forward", "call": "forward", "__call__": "forward"}
# Methods one port has because its framework's API asks for them, by (port, class).
PORT_ONLY = {
    # transformers' Flax API: decoding over explicit params and caches (encode and init_cache are
    # the port contract, in every port).
    ("flax", "EncoderDecoderModel"): {"decode"},
    # Keras' compile/fit/evaluate hooks and the SavedModel serving signature.
    ("tf", "EncoderDecoderModel"): {"compute_loss", "train_step", "test_step", "serving_generate_function"},
    # Linen modules hold no params: the Flax architecture classes save params given or bound.
    ("flax", "PreTrainedModel"): {"params"},
}
# Methods only the PyTorch port has, by class: transformers' PyTorch conveniences (`model.device`,
# `model.dtype`; Keras layers and the Flax model have their own `dtype`), and gradient checkpointing,
# which transformers' TF classes never had (the Flax model has it).
PT_ONLY = {
    "EncoderDecoderModel": {"tf": {"device", "dtype", "gradient_checkpointing_enable",
                                   "gradient_checkpointing_disable", "is_gradient_checkpointing"},
                            "flax": {"device", "dtype"}},
}
# Classes transformers named differently in one framework (transformers 4.57), by (port, name without
# the prefix): the PyTorch port's name. The Flax BERT decoder is FlaxBertForCausalLM, where PyTorch and
# TF have (TF)BertLMHeadModel.
TRANSFORMERS_NAMES = {("flax", "BertForCausalLM"): "BertLMHeadModel"}
# Classes only one port has, by (port, file), because transformers' API in that framework differs: its
# Flax `generate` returned FlaxGreedySearchOutput, FlaxSampleOutput or FlaxBeamSearchOutput (4.57), and its
# PyTorch ModelOutput is an OrderedDict, built in the PyTorch port from the fields of encdec/outputs.py's
# classes, which TF and Flax use as they are.
PORT_ONLY_CLASSES = {
    ("flax", "generation.py"): {"GreedySearchOutput", "SampleOutput", "BeamSearchOutput"},
    ("pt", "common.py"): {"BaseModelOutput", "CausalLMOutput", "Seq2SeqLMOutput"},
}
HOOKS = {"__init__", "setup", "build", "get_config", "__post_init__", "compute_output_shape"}


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _public_methods(node: ast.ClassDef) -> set[str]:
    """The public methods a class body defines (`forward`, `call` and `__call__` as `forward`)."""
    return {
        SAME_METHOD.get(item.name, item.name)
        for item in node.body
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        and item.name not in HOOKS
        and (not item.name.startswith("_") or item.name in SAME_METHOD)
    }


def _core_methods(tree: ast.Module, node: ast.ClassDef, level: int) -> set[str]:
    """The public methods class `node` of `tree` inherits from classes of the core (encdec/*.py, the
    shared mixins), base after base. `level` is how many dots lead from `tree`'s file to encdec."""
    imported = {alias.asname or alias.name: (item.module, alias.name) for item in tree.body
                if isinstance(item, ast.ImportFrom) and item.level == level and item.module
                for alias in item.names}
    methods: set[str] = set()
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in imported:
            module, name = imported[base.id]
            core = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
            cls = next(n for n in core.body if isinstance(n, ast.ClassDef) and n.name == name)
            methods |= _public_methods(cls) | _core_methods(core, cls, 1)
    return methods


def _outline(port: str, filename: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, name without prefix, public methods, those inherited from the core included) of each
    top-level class and function."""
    tree = ast.parse((ROOT / port / filename).read_text())
    prefix = PORTS[port]
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            methods = sorted(_public_methods(node) | _core_methods(tree, node, 2))
            name = _strip(node.name, prefix)
            out.append(("class", TRANSFORMERS_NAMES.get((port, name), name), tuple(methods)))
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            out.append(("function", node.name, ()))
    return out


@pytest.mark.parametrize("filename", FILES)
def test_ports_define_the_same_classes_in_the_same_order(filename):
    names = {port: [(kind, name) for kind, name, _ in _outline(port, filename)
                    if name not in PORT_ONLY_CLASSES.get((port, filename), ())] for port in PORTS}
    assert names["tf"] == names["pt"], f"encdec/tf/{filename} does not mirror encdec/pt/{filename}"
    assert names["flax"] == names["pt"], f"encdec/flax/{filename} does not mirror encdec/pt/{filename}"


@pytest.mark.parametrize("filename", FILES)
def test_mirrored_classes_have_the_same_public_methods(filename):
    methods = {port: {name: m for kind, name, m in _outline(port, filename) if kind == "class"} for port in PORTS}
    for port in ("tf", "flax"):
        for name, expected in methods["pt"].items():
            if name in PORT_ONLY_CLASSES.get(("pt", filename), ()):
                continue
            got = methods[port].get(name)
            if got is not None:
                got = tuple(m for m in got if m not in PORT_ONLY.get((port, name), ()))
            expected = tuple(m for m in expected if m not in PT_ONLY.get(name, {}).get(port, ()))
            assert got == expected, (
                f"{PORTS[port]}{name} in encdec/{port}/{filename} has methods {got}; "
                f"expected the PyTorch port's {expected}"
            )


def test_outline_sees_a_class_only_one_port_has(tmp_path, monkeypatch):
    for port in PORTS:
        (tmp_path / port).mkdir()
    (tmp_path / "pt" / "x.py").write_text("class A:\n    def forward(self):\n        pass\n")
    (tmp_path / "tf" / "x.py").write_text("class TFA:\n    def call(self):\n        pass\nclass TFB:\n    pass\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _outline("pt", "x.py") == [("class", "A", ("forward",))]
    assert _outline("tf", "x.py") == [("class", "A", ("forward",)), ("class", "B", ())]


def test_outline_sees_methods_inherited_from_the_core(tmp_path, monkeypatch):
    (tmp_path / "pt").mkdir()
    (tmp_path / "mixins.py").write_text("class Base:\n    def save(self):\n        pass\n    def _hook(self):\n"
                                        "        pass\n")
    (tmp_path / "pt" / "x.py").write_text("from ..mixins import Base\nclass A(Base):\n    def forward(self):\n"
                                          "        pass\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _outline("pt", "x.py") == [("class", "A", ("forward", "save"))]


def test_outline_knows_transformers_per_framework_names(tmp_path, monkeypatch):
    for port in PORTS:
        (tmp_path / port).mkdir()
    (tmp_path / "flax" / "x.py").write_text("class FlaxBertForCausalLM:\n    pass\nFlaxBertLMHeadModel = 1\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert _outline("flax", "x.py") == [("class", "BertLMHeadModel", ())]


# -- the port contract -------------------------------------------------------------------------

import importlib  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

MODEL_CLASSES = {"pt": "EncoderDecoderModel", "tf": "TFEncoderDecoderModel", "flax": "FlaxEncoderDecoderModel"}
FRAMEWORKS = {"pt": ("torch",), "tf": ("tensorflow", "keras"), "flax": ("jax", "flax")}
# Parameters one framework's API adds: Flax's explicit params and training switches, Keras' `training`.
FRAMEWORK_EXTRAS = {"params", "dropout_rng", "train", "training", "prng_key", "compiler_options"}
# The contract: parameter names in order (self/cls left out), and `**options` where it takes them.
CONTRACT = {
    "from_state": (("config", "state", "dtype"), False),
    "canonical_state": ((), False),
    "load_canonical_state": (("state", "partial"), False),
    "encode": (("input_ids", "attention_mask", "token_type_ids", "position_ids", "output_attentions",
                "output_hidden_states"), False),
    "init_cache": (("batch_size", "max_length", "encoder_outputs", "encoder_attention_mask"), False),
    "decode_step": (("decoder_input_ids", "cache", "decoder_position_ids"), False),
    "reorder_cache": (("cache", "rows"), False),
    "generate": (("input_ids", "attention_mask", "generation_config", "decoder_input_ids"), True),
}
# Defaults the contract fixes.
CONTRACT_DEFAULTS = {
    "from_state": {"dtype": None},
    "load_canonical_state": {"partial": False},
    "encode": {"attention_mask": None, "token_type_ids": None, "position_ids": None, "output_attentions": False,
               "output_hidden_states": False},
    "init_cache": {"encoder_attention_mask": None},
    "decode_step": {"decoder_position_ids": None},
    "generate": {"attention_mask": None, "generation_config": None, "decoder_input_ids": None},
}
# The same in every port, though the contract does not list the arguments.
SAME_IN_EVERY_PORT = ("save_pretrained", "from_pretrained")


def _model_class(port: str):
    missing = [m for m in FRAMEWORKS[port] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{port}: {', '.join(missing)} not installed")
    return getattr(importlib.import_module(f"encdec.{port}"), MODEL_CLASSES[port])


def _parameters(method) -> tuple[tuple[str, ...], bool]:
    """(names in order without self/cls and the framework's extras, whether it takes **kwargs)."""
    params = list(inspect.signature(method).parameters.values())
    names = tuple(
        p.name for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in FRAMEWORK_EXTRAS and p.name != "self"
    )
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


@pytest.mark.parametrize("port", list(PORTS))
@pytest.mark.parametrize("method", list(CONTRACT))
def test_contract_methods_have_the_contracts_signature(port, method):
    cls = _model_class(port)
    assert hasattr(cls, method), f"{cls.__name__} has no {method}; the port contract asks for it"
    names, takes_options = _parameters(getattr(cls, method))
    expected, expects_options = CONTRACT[method]
    assert names == expected, f"{cls.__name__}.{method}{names}; expected the contract's {expected}"
    if expects_options:
        assert takes_options, f"{cls.__name__}.{method} takes no **options"
    parameters = inspect.signature(getattr(cls, method)).parameters
    for name, default in CONTRACT_DEFAULTS.get(method, {}).items():
        assert parameters[name].default is default, f"{cls.__name__}.{method}: {name} defaults to " \
            f"{parameters[name].default!r}; expected {default!r}"
    if method == "from_state":
        assert isinstance(inspect.getattr_static(cls, method), classmethod), f"{cls.__name__}.from_state"


@pytest.mark.parametrize("method", SAME_IN_EVERY_PORT)
def test_loading_and_saving_take_the_same_arguments_in_every_port(method):
    found = {}
    for port in PORTS:
        if all(importlib.util.find_spec(m) for m in FRAMEWORKS[port]):
            found[port] = _parameters(getattr(_model_class(port), method))[0]
    if len(found) < 2:
        pytest.skip("fewer than two ports installed")
    reference_port, reference = next(iter(found.items()))
    for port, names in found.items():
        assert names == reference, f"{MODEL_CLASSES[port]}.{method}{names}; {MODEL_CLASSES[reference_port]} " \
            f"takes {reference}"


def _cache_outline(port, backend, model, config, ids, mask):
    """The nest of init_cache and of decode_step's cache: keys, types and shapes, and decode_step's tuple."""
    encoded = backend.encode(model, ids, mask)
    cache = backend.init_cache(model, ids.shape[0], 5, encoded, mask)
    out = backend.decode_step(model, np.full((ids.shape[0], 2), config.decoder_start_token_id), cache)
    assert isinstance(out, tuple) and len(out) == 2, f"{port}: decode_step returned {type(out).__name__}"
    logits, stepped = out

    def outline(nest):
        return {
            "type": type(nest).__name__,
            "keys": sorted(nest),
            "index": int(backend.numpy(nest["index"])),
            "encoder_attention_mask": None if nest["encoder_attention_mask"] is None
            else tuple(backend.numpy(nest["encoder_attention_mask"]).shape),
            "layers": (type(nest["layers"]).__name__,
                       [{k: tuple(backend.numpy(v).shape) for k, v in sorted(layer.items())}
                        for layer in nest["layers"]]),
        }

    return outline(cache), tuple(backend.numpy(logits).shape), outline(stepped)


def test_the_cache_is_the_same_nest_in_every_port():
    sys.path.insert(0, str(pathlib.Path(__file__).parent / "ports"))
    try:
        from port_backends import BACKENDS
        from ports_lib import joined_config, random_batch, random_state
    finally:
        sys.path.pop(0)
    config = joined_config("bert2gpt2", 0, "proj")
    state = random_state(config, 0)
    b = random_batch(config, np.random.default_rng(0), 2, 6, 4, "right")
    outlines = {}
    for port, backend in BACKENDS.items():
        if backend.available():
            model = backend.from_state(config, state)
            outlines[port] = _cache_outline(port, backend, model, config, b["input_ids"], b["attention_mask"])
    if len(outlines) < 2:
        pytest.skip("fewer than two ports installed")
    first, (cache, logits, stepped) = next(iter(outlines.items()))
    heads, head_dim = config.decoder.num_attention_heads, config.decoder.hidden_size // config.decoder.num_attention_heads
    assert cache["layers"][1][0] == {"cross_key": (2, heads, 6, head_dim), "cross_value": (2, heads, 6, head_dim),
                                     "key": (2, heads, 5, head_dim), "value": (2, heads, 5, head_dim)}
    assert logits == (2, 2, config.decoder.vocab_size) and stepped["index"] == 2
    for port, outline in outlines.items():
        assert outline == outlines[first], f"{port}'s cache {outline} differs from {first}'s {outlines[first]}"


# -- the architecture classes' transformers methods ------------------------------------------

ARCHITECTURES = ("BertModel", "BertLMHeadModel", "RobertaModel", "RobertaForCausalLM", "BertGenerationEncoder",
                 "BertGenerationDecoder", "GPT2Model", "GPT2LMHeadModel")
# Methods of transformers' model classes that the architecture classes have, where a port has them.
ARCHITECTURE_METHODS = ("get_input_embeddings", "gradient_checkpointing_enable", "gradient_checkpointing_disable",
                        "is_gradient_checkpointing")
# What a port lacks, by port: transformers' TF classes had no gradient checkpointing, and neither has
# the TF port.
ARCHITECTURE_LACKS = {
    "tf": {"gradient_checkpointing_enable", "gradient_checkpointing_disable", "is_gradient_checkpointing"},
}


def _architecture_class(port: str, name: str):
    pt_to_port = {v: k for (p, k), v in TRANSFORMERS_NAMES.items() if p == port}
    return getattr(importlib.import_module(f"encdec.{port}"), PORTS[port] + pt_to_port.get(name, name))


@pytest.mark.parametrize("port", list(PORTS))
def test_architecture_classes_have_transformers_methods(port):
    missing = [m for m in FRAMEWORKS[port] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{port}: {', '.join(missing)} not installed")
    expected = [m for m in ARCHITECTURE_METHODS if m not in ARCHITECTURE_LACKS.get(port, ())]
    lacking = sorted(ARCHITECTURE_LACKS.get(port, ()))
    for name in ARCHITECTURES:
        cls = _architecture_class(port, name)
        assert [m for m in expected if not hasattr(cls, m)] == [], f"{cls.__name__} lacks transformers' methods"
        assert [m for m in lacking if hasattr(cls, m)] == [], (
            f"{cls.__name__} has {lacking}; remove them from ARCHITECTURE_LACKS[{port!r}]"
        )
