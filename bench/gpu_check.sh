#!/usr/bin/env bash
# The GPU figures of #21 in one device call (bench/RESULTS.md, "Generation on a GPU").
#
#   on the GPU machine, from the repository root, with the wheels it lacks in .whl/ (diffusers, av,
#   pydantic, pydantic-core, annotated-types, typing-inspection, SQLAlchemy, importlib-metadata):
#   bash bench/gpu_check.sh [OUTPUT_DIR]
#
# 1. the full-size random LTX-Video: diffusers' own call against the generate stage (bfloat16), then the
#    same call after `from_pipe` (the old generator's float32 cast); 2. float16; 3. torch.compile.
# Each step has its own time limit, so one that hangs or fails leaves the others' figures.
set -u
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" \
  | tee -a "$out/gpu.txt"
step() {  # step NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" python3 bench/generation.py --full-ltx "$@" 2>&1 | grep -v Warning | tee "$out/$name.log"
}
step bf16 200 --dtype bfloat16 --requests 6 --batches-per-poll 3 --show-from-pipe-cast
step fp16 90 --dtype float16 --requests 3 --batches-per-poll 3 --baseline-repeats 2
step compile 170 --dtype bfloat16 --requests 3 --batches-per-poll 3 --baseline-repeats 2 --compile
