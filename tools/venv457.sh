#!/usr/bin/env bash
# Creates .venv-457: transformers 4.57 (PyTorch only) as a second reference
# beside transformers 5 in .venv. Used by tools/make_457_fixtures.py and by the
# slow tests in tests/interop/test_transformers457.py. encdec itself is not
# installed there: callers put the repository on PYTHONPATH so that scripts
# can use encdec's numpy core.
#
#   bash tools/venv457.sh            # creates .venv-457 when missing
#   VENV457=/some/dir bash tools/venv457.sh
#
# torch is pinned to the same CPU build as constraints.txt (any other version
# would pull a multi-GB CUDA build). tokenizers and huggingface-hub are pinned
# within transformers 4.57's own bounds, which exclude the versions .venv uses.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV457:-$repo/.venv-457}
stamp=$venv/.installed-stamp
if [ -f "$stamp" ]; then
    exit 0
fi
# A partial build from an interrupted run is started again from scratch.
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q \
    torch==2.13.0 transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2 \
    numpy==2.4.6 safetensors==0.8.0
"$venv/bin/python" -c "import transformers, torch; assert transformers.__version__ == '4.57.6', transformers.__version__"
touch "$stamp"
