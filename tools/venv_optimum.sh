#!/usr/bin/env bash
# Creates .venv-optimum: optimum's onnxruntime models (ORTModelForSeq2SeqLM) with transformers 4.57,
# to check that an ONNX export of encdec (`encdec export DIR OUT --to onnx`) loads and generates in
# optimum too. Used by the slow tests in tests/export/test_onnx_optimum.py. encdec itself is not
# installed there: the tests export with encdec in .venv and only load the export in this one.
#
#   bash tools/venv_optimum.sh            # creates .venv-optimum when missing
#   VENV_OPTIMUM=/some/dir bash tools/venv_optimum.sh
#
# torch is pinned to the same CPU build as constraints.txt (any other version would pull a
# multi-GB CUDA build); transformers, tokenizers and huggingface-hub as in tools/venv457.sh.
# optimum 2 keeps its ONNX Runtime models in optimum-onnx (optimum[onnxruntime] installs it).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV_OPTIMUM:-$repo/.venv-optimum}
stamp=$venv/.installed-stamp
if [ -f "$stamp" ]; then
    exit 0
fi
# A partial build from an interrupted run is started again from scratch.
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q \
    torch==2.13.0 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2 \
    numpy==2.4.6 safetensors==0.8.0 \
    "optimum[onnxruntime]==2.1.0" optimum-onnx==0.1.0 onnx==1.23.2 onnxruntime==1.32.0
"$venv/bin/python" -c "
import transformers, optimum.onnxruntime, onnxruntime
assert transformers.__version__ == '4.57.6', transformers.__version__
from optimum.onnxruntime import ORTModelForSeq2SeqLM
"
touch "$stamp"
