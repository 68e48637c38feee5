"""encdec.export's framework-neutral part: the options it refuses before writing anything, the
destination rules (never a half-written export, an existing one replaced only when asked), the
files it adds beside the export's own, and the command line. The kinds' own tests are beside this."""

from __future__ import annotations

import json
import types

import pytest

from conftest import FIXTURES

import encdec
import encdec.export as ex
from encdec.cli import main
from encdec.errors import ExportError

SOURCE = FIXTURES / "bert2bert"


@pytest.fixture
def fake_kind(monkeypatch):
    """A kind whose writer writes one file, or fails half way when `fail` is set."""
    calls = []

    def write(model_dir, out, *, dtype, opset, generation):
        calls.append(dict(dtype=dtype, opset=opset, generation=generation))
        (out / "graph.bin").write_bytes(b"half")
        if kind.fail:
            raise RuntimeError("the writer failed half way")

    kind = types.SimpleNamespace(DTYPES=("float32", "float16"), GENERATION_OPTIONS=("num_beams",), write=write,
                                 fail=False, calls=calls, load=lambda path: ("runner of", path))
    monkeypatch.setattr(ex, "kind_module", lambda to: kind)
    monkeypatch.setattr(encdec, "require_framework", lambda port: None)
    return kind


@pytest.mark.parametrize("options, message", [
    (dict(to="tflite"), "cannot export to 'tflite'; expected one of onnx, savedmodel, jax"),
    (dict(to="onnx", dtype="int8"), "dtype 'int8' is not an export dtype"),
    (dict(to="jax", opset=17), "an opset applies to ONNX exports only"),
    (dict(to="onnx", opset=0), "opset is 0; expected a positive integer"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ExportError, match=message):
        ex.export(SOURCE, tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


def test_a_dtype_or_generation_option_the_kind_cannot_honour_is_refused(tmp_path, fake_kind):
    with pytest.raises(ExportError, match="cannot be written in bfloat16; its runtime runs float32, float16"):
        ex.export(SOURCE, tmp_path / "out", to="jax", dtype="bfloat16")
    with pytest.raises(ExportError, match="takes no generation option top_k; expected only num_beams"):
        ex.export(SOURCE, tmp_path / "out", to="jax", generation={"top_k": 5})
    assert list(tmp_path.iterdir()) == [] and fake_kind.calls == []


def test_an_export_holds_the_model_files_and_its_manifest(tmp_path, fake_kind):
    out = encdec.export(SOURCE, tmp_path / "out", to="savedmodel", dtype="float16", generation={"num_beams": 3})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "export.json", "generation_config.json",
                                                     "graph.bin"]
    assert (out / "config.json").read_bytes() == (SOURCE / "config.json").read_bytes()
    assert json.loads((out / "export.json").read_text()) == {
        "kind": "savedmodel", "dtype": "float16", "opset": None, "generation": {"num_beams": 3}}
    assert fake_kind.calls == [dict(dtype="float16", opset=None, generation={"num_beams": 3})]
    assert ex.load(out) == ("runner of", out)


def test_an_existing_destination_is_kept_unless_overwrite_and_then_replaced_whole(tmp_path, fake_kind):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(ExportError, match="exists; expected a new destination, or overwrite=True"):
        ex.export(SOURCE, out, to="jax")
    assert (out / "old.txt").read_text() == "keep me"
    ex.export(SOURCE, out, to="jax", overwrite=True)
    assert not (out / "old.txt").exists() and (out / "graph.bin").exists()


def test_a_failing_writer_leaves_no_export_and_no_temporary_folder(tmp_path, fake_kind):
    fake_kind.fail = True
    with pytest.raises(RuntimeError, match="half way"):
        ex.export(SOURCE, tmp_path / "out", to="jax")
    assert list(tmp_path.iterdir()) == []
    # an export being replaced stays as it was
    fake_kind.fail = False
    ex.export(SOURCE, tmp_path / "out", to="jax")
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    fake_kind.fail = True
    with pytest.raises(RuntimeError):
        ex.export(SOURCE, tmp_path / "out", to="jax", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_destination_inside_the_model_folder_is_refused(tmp_path, fake_kind):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes((SOURCE / "config.json").read_bytes())
    with pytest.raises(ExportError, match="overlaps the model folder"):
        ex.export(model, model / "export", to="jax")
    with pytest.raises(ExportError, match="no config.json; expected a model folder"):
        ex.export(tmp_path / "missing", tmp_path / "out", to="jax")


def test_a_folder_that_is_not_an_export_is_named(tmp_path):
    with pytest.raises(ExportError, match="no export.json; expected a folder written by encdec export"):
        ex.load(tmp_path)


def test_the_command_line_passes_the_options_and_reports_errors(tmp_path, fake_kind, capsys):
    assert main(["export", str(SOURCE), str(tmp_path / "out"), "--to", "jax", "--num-beams", "4"]) == 0
    assert fake_kind.calls[-1]["generation"] == {"num_beams": 4}
    assert main(["export", str(SOURCE), str(tmp_path / "out"), "--to", "jax"]) == 3
    assert "encdec: error:" in capsys.readouterr().err
