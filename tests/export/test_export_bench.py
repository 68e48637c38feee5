"""benchmarks/export_bench.py: its section replaces its own in a results file and keeps the rest byte
for byte; `--quick` runs every contender (optimum's in .venv-optimum) and reports equal ids."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "export_bench.py"
VENV_OPTIMUM = Path(os.environ.get("VENV_OPTIMUM", REPO / ".venv-optimum"))
# A results file as render.py writes it, with CRLF and trailing spaces that must survive.
BEFORE = "# Benchmark results\n\n## Generation\n\n| a | b |\n|---|---|\n| 1 | 2 |  \r\nlast line, no newline"


def _bench_module():
    spec = importlib.util.spec_from_file_location("export_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_section_is_appended_then_replaced_in_place(tmp_path):
    bench = _bench_module()
    path = tmp_path / "RESULTS.md"
    path.write_bytes(BEFORE.encode())
    bench.write_section(str(path), "## Exported generation\n\nfirst\n")
    assert path.read_bytes() == (BEFORE + "\n\n## Exported generation\n\nfirst\n").encode()
    bench.write_section(str(path), "## Exported generation\n\nsecond\n")
    assert path.read_bytes() == (BEFORE + "\n\n## Exported generation\n\nsecond\n").encode()
    # a section followed by another one is replaced where it stands
    path.write_bytes(b"# R\n\n## Exported generation\n\nold\nold\n\n## Memory\n\nkept\n")
    bench.write_section(str(path), "## Exported generation\n\nnew\n")
    assert path.read_bytes() == b"# R\n\n## Exported generation\n\nnew\n\n## Memory\n\nkept\n"


@pytest.mark.slow
def test_quick_run_appends_a_table_per_case(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if not (VENV_OPTIMUM / ".installed-stamp").is_file():
        subprocess.run(["bash", str(REPO / "tools" / "venv_optimum.sh")], check=True)
    path = tmp_path / "RESULTS.md"
    path.write_bytes(BEFORE.encode())
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for _ in range(2):  # the second run replaces the first one's section
        done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--append", str(path)], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
    text = path.read_bytes().decode()
    assert text.startswith(BEFORE + "\n\n## Exported generation\n")
    assert text.count("## Exported generation") == 1
    section = text[len(BEFORE):]
    assert section.strip() == done.stdout.strip()
    for case in ("### greedy batch 1", "### beam4 batch 1"):
        table = section.split(case, 1)[1].split("Targets:", 1)[0]
        rows = [line for line in table.splitlines() if line.startswith("| ") and "contender" not in line]
        assert len(rows) == 4, table
        for row in rows:  # every contender ran, and gave encdec PT's ids
            assert row.rstrip().endswith("| equal |"), row
    assert "| greedy batch 1 |" in section and "| beam4 batch 1 |" in section
