"""Shared test set-up: fixture locations, and one thread per framework op pool.

The machine has 2 cores; pinning the thread pools keeps the three frameworks
from oversubscribing it when one process imports all of them.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hf"
CASES = ("bert2bert", "bert2gpt2", "roberta2roberta", "bertgen2bertgen", "bert2bert_proj")
FORMAT_FILES = {
    "safetensors": "model.safetensors",
    "pt": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}


def case_formats(case: str) -> list[str]:
    """The formats transformers wrote for a fixture case."""
    return [fmt for fmt, name in FORMAT_FILES.items() if (FIXTURES / case / name).exists()]


def case_format_params() -> list[tuple[str, str]]:
    return [(case, fmt) for case in CASES for fmt in case_formats(case)]


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return FIXTURES


def golden(case: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / case / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_in_conformance_tests(request):
    """The conformance suite's tiny models run several times faster on one PyTorch
    thread than on two that spin-wait for each other; restored afterwards."""
    import importlib.util

    if "conformance" not in request.node.path.parts or importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")
