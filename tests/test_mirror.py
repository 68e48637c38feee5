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
    "gpt2.py",
    "encoder_decoder.py",
    "generation.py",
)
ROOT = pathlib.Path(__file__).resolve().parents[1] / "encdec"
SAME_METHOD = {"forward": "forward", "call": "forward", "__call__": "forward"}
# Methods one port has because its framework's API asks for them, by (port, class).
PORT_ONLY = {
    # transformers' Flax API: pure functions over explicit params and caches.
    ("flax", "EncoderDecoderModel"): {"encode", "decode", "init_cache"},
    # Keras' compile/fit/evaluate hooks and the SavedModel serving signature.
    ("tf", "EncoderDecoderModel"): {"compute_loss", "train_step", "test_step", "serving_generate_function"},
}
HOOKS = {"__init__", "setup", "build", "get_config", "__post_init__", "compute_output_shape"}


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _outline(port: str, filename: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(kind, name without prefix, public methods) of each top-level class and function."""
    tree = ast.parse((ROOT / port / filename).read_text())
    prefix = PORTS[port]
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            methods = sorted(
                {
                    SAME_METHOD.get(item.name, item.name)
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and item.name not in HOOKS
                    and (not item.name.startswith("_") or item.name in SAME_METHOD)
                }
            )
            out.append(("class", _strip(node.name, prefix), tuple(methods)))
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            out.append(("function", node.name, ()))
    return out


@pytest.mark.parametrize("filename", FILES)
def test_ports_define_the_same_classes_in_the_same_order(filename):
    names = {port: [(kind, name) for kind, name, _ in _outline(port, filename)] for port in PORTS}
    assert names["tf"] == names["pt"], f"encdec/tf/{filename} does not mirror encdec/pt/{filename}"
    assert names["flax"] == names["pt"], f"encdec/flax/{filename} does not mirror encdec/pt/{filename}"


@pytest.mark.parametrize("filename", FILES)
def test_mirrored_classes_have_the_same_public_methods(filename):
    methods = {port: {name: m for kind, name, m in _outline(port, filename) if kind == "class"} for port in PORTS}
    for port in ("tf", "flax"):
        for name, expected in methods["pt"].items():
            got = methods[port].get(name)
            if got is not None:
                got = tuple(m for m in got if m not in PORT_ONLY.get((port, name), ()))
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
