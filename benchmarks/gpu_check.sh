#!/usr/bin/env bash
# One prepared GPU check for issue #22: correctness of the GPU paths, then the speed tables at 512 px.
#
# Runs on a bare H200 machine (PyTorch 2.11 + cu130, Python 3.12, no diffusers) in the repository root,
# in under 8 minutes (a `timeout` per stage: 100 s + 300 s, after about 20 s of installing), writing everything under $OUT and printing the tables last:
#
#   $OUT/correctness.txt   benchmarks/gpu_correctness.py on the tiny model: each switch gives the default
#                          frames, CUDA graphs capture, no host sync per step, streaming close and deterministic
#   $OUT/tables.md         benchmarks/generate.py, svd-xt with random weights, fp16, 512x512:
#                          each switch on/off (ms per UNet call, TFLOP/s), then rows default recipe /
#                          optimised / streamed (5 s of speech) / release as its yaml (2 s), then VAE decoding
#   $OUT/bench.json        every figure; $OUT/bench.log the whole log
#
# The wheels it installs travel in .whl/ (git-ignored). Fetch them once, on a machine with pip:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl diffusers==0.42.1 importlib_metadata==8.7.0
#
# (6.4 MB; everything else the project imports is on the machine: transformers, huggingface_hub >= 1.32,
# safetensors, accelerate, einops, scipy, pillow, typer. av (36 MB) is left out: nothing here writes video.)
# Then, through the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540).
#
# Dry run on a CPU (every stage, the tiny model, 1 s of speech, no inductor):
#   OUT=/tmp/out bash benchmarks/gpu_check.sh --cpu-smoke
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "${1:-}" = "--cpu-smoke" ]; then
  PY=${PYTHON:-python3}
  [ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
  DEVICE=cpu
  BENCH=(--model tiny --device cpu --dtype float32 --seconds 1 --release-seconds 1 --threads 1 --compile-backend aot_eager --repeats 2)
  LIMITS=(300 1500)
else
  PY=python3
  DEVICE=cuda
  BENCH=(--model svd-xt --size 512 --device cuda --dtype float16 --seconds 5 --release-seconds 2 --threads 8 --repeats 10)
  LIMITS=(100 300)
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch, diffusers, dicetalk.pipeline; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/versions.txt" || exit 1

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log, and say how it ended
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout --signal=INT --kill-after=15 "$limit" "$@"
  local rc=$?
  echo "stage $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$OUT/stages.txt"
}

stage correctness "${LIMITS[0]}" bash -c "$PY benchmarks/gpu_correctness.py $DEVICE 2>&1 | tee '$OUT/correctness.txt'"
# One process for every table (the model is built once); each table is appended to tables.md when done,
# so a stage stopped at its limit still returns what it measured. Switches first, then the rows (the release's
# recipe last), then VAE decoding.
: > "$OUT/tables.md"
stage bench "${LIMITS[1]}" bash -c "$PY benchmarks/generate.py ${BENCH[*]} --switches --rows default,optimised,streamed,release \
  --markdown '$OUT/tables.md' --json '$OUT/bench.json' 2>&1 | grep -v 'should be kept in float32' | tee '$OUT/bench.log'"

echo
echo "=== correctness ==="
tail -n 20 "$OUT/correctness.txt"
echo "=== tables ==="
cat "$OUT/tables.md"
cat "$OUT/stages.txt"
