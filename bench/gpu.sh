#!/usr/bin/env bash
# Every GPU check in one command, on a GPU node with the project installed:
#   bash bench/gpu.sh [OUT_DIR]
# the GPU tests (torch renderer, on-the-fly rendering and training), then
# bench/datagen.py --gpu-only and bench/train.py --device cuda; logs and JSON go to OUT_DIR.
set -uo pipefail
out=${1:-bench/results}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/gpu.txt"
timeout "${TEST_TIMEOUT:-240}" "$py" -m pytest -q -p no:cacheprovider \
  tests/test_render_torch.py tests/test_onthefly.py -k "gpu" 2>&1 | tail -15 | tee "$out/gpu-tests.log"
timeout "${DATAGEN_TIMEOUT:-200}" "$py" bench/datagen.py --gpu-only 2>&1 \
  | grep -v Warning | tee "$out/datagen-gpu.log"
timeout "${TRAIN_TIMEOUT:-330}" "$py" bench/train.py --device cuda 2>&1 \
  | grep -v "Warning\|USDT" | tee "$out/train-gpu.log"
cp bench/results/*.json "$out/" 2>/dev/null || true
