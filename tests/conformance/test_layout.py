"""Where the suite lives: inside the package, with no import cycle, in a wheel that holds
`encdec` alone, and one fixture source (tests/fixtures/hf) that tools/make_fixtures.py
describes case by case."""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from encdec.conformance import cases

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = REPO / "encdec"
FIXTURES = REPO / "tests" / "fixtures" / "hf"


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of every module `path` imports, at any depth (relative ones resolved)."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_suite_never_imports_the_command_or_the_testing_module():
    """encdec.cli and encdec.testing import encdec.conformance; never the other way round."""
    for path in sorted((PACKAGE / "conformance").glob("*.py")):
        bad = {name for name in _imports(path) if name.startswith(("encdec.cli", "encdec.testing"))}
        assert not bad, f"{path.name} imports {sorted(bad)}"
    # The command loads the suite lazily, by name, when its parser is built.
    assert not any(n.startswith("encdec.conformance") for n in _imports(PACKAGE / "cli.py"))
    assert any(n.startswith("encdec.conformance") for n in _imports(PACKAGE / "testing.py"))


def test_the_old_top_level_package_is_gone():
    assert not (REPO / "conformance").exists()
    assert importlib.util.find_spec("conformance") is None or \
        not pathlib.Path(importlib.util.find_spec("conformance").origin or "").is_file()


def test_the_wheel_holds_the_encdec_package_alone(tmp_path):
    """Built from a copy of what the wheel is made of (setuptools writes a build/ folder)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "encdec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("tools", "tests", "benchmarks"):  # what must stay out, were setuptools to look
        (src / name).mkdir()
        (src / name / "__init__.py").write_text("")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named pip" in done.stderr:
        pytest.skip("pip is not installed here")
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("encdec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"encdec", wheel.name.split("-py")[0] + ".dist-info"}
    suite = [n for n in names if n.startswith("encdec/conformance/")]
    assert "encdec/conformance/suite.py" in suite
    assert all(n.endswith(".py") for n in suite), [n for n in suite if not n.endswith(".py")]
    assert not [n for n in names if "gpu_check" in n or "fixtures" in n or n.endswith((".npz", ".safetensors"))]


def _make_fixtures(monkeypatch):
    """tools/make_fixtures.py as a module (it needs transformers 4.57 only to run, not to import)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "tools" / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_fixtures", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tools_make_fixtures_describes_every_fixture_folder(monkeypatch):
    tool = _make_fixtures(monkeypatch)
    # transformers457/ holds transformers 4.57's own results, written by tools/make_457_fixtures.py.
    folders = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "transformers457")
    assert sorted(tool.CASES) == folders
    assert set(cases.FIXTURE_NAMES) <= set(folders)
    readme = (FIXTURES / "README.md").read_text()
    for name, case in tool.CASES.items():
        info = json.loads((FIXTURES / name / "README.json").read_text())
        assert (case.start, case.pad, case.eos) == (info["decoder_start_token_id"], info["pad_token_id"],
                                                    info["eos_token_id"]), name
        assert sorted(["pt", *case.formats]) == sorted(info["frameworks_saved"]), name
        assert sorted([*info["files"], "README.json"]) == sorted(p.name for p in (FIXTURES / name).iterdir()), name
        assert f"| {name} |" in readme, f"{name} is not in the fixtures README"
        with open(FIXTURES / name / "config.json") as f:
            config = json.load(f)
        assert (config["decoder_start_token_id"], config["pad_token_id"], config["eos_token_id"]) == (
            case.start, case.pad, case.eos), name
    with __import__("numpy").load(FIXTURES / "bert2bert" / "golden.npz") as golden:
        assert golden["attention_mask"].sum(1).tolist() == list(tool.ENCODER_LENGTHS)
        assert (golden["labels"] != -100).sum(1).tolist() == list(tool.LABEL_LENGTHS)
        assert set(tool.GENERATIONS) <= set(golden.files)
