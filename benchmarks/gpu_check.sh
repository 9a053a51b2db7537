#!/usr/bin/env bash
# The GPU check, prepared to run once on a lent GPU machine (device time is short): the -m gpu tests, the CUDA
# benchmark of DiracNet-18 in every PyTorch format, torch.compile as a second part, torchvision's ResNet-18
# against ours. Each step has its own deadline so an overrun costs that step, not the results before it.
#
#   OUT=/tmp/gpu-out GIT_SHA=$(git rev-parse HEAD) bash benchmarks/gpu_check.sh        # on the GPU machine
#   OUT=/tmp/gpu-out DRY_RUN=1 bash benchmarks/gpu_check.sh                              # plumbing check on a CPU
#
# Writes under $OUT: pytest-gpu.txt, env.txt, cuda-diracnet18.{json,png}, cuda-torchvision-resnet18.json, log.txt.
set -u
OUT=${OUT:?set OUT to the output folder}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
start=$(date +%s)
budget=${BUDGET_S:-500}
left() { echo $(( budget - ($(date +%s) - start) )); }
step() {  # step NAME SECONDS CMD...: run CMD with at most SECONDS (or what is left), log its exit status
  local name=$1 want=$2; shift 2
  local t; t=$(left); (( want < t )) && t=$want
  if (( t < 20 )); then echo "== $name: not run (budget spent)" | tee -a "$OUT/log.txt"; return; fi
  echo "== $name (up to ${t}s) $(date -u +%T)" | tee -a "$OUT/log.txt"
  timeout "$t" "$@" 2>&1 | tee -a "$OUT/log.txt" | tail -n 40
  echo "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start ))s" | tee -a "$OUT/log.txt"
}

if [[ -n ${DRY_RUN:-} ]]; then
  DEV=cpu; BATCH=1,2; CBATCH=1; FORMATS=fp32; CFORMATS=fp32; EXTRA=(--depth 18 --rounds 2 --iters 4 --max-seconds 0.2)
  BACKENDS=torch,cuda-graph,tensorrt
else
  DEV=cuda; BATCH=1,8,32,128; CBATCH=1,128; FORMATS=fp32,tf32,fp16,bf16,fp16-cl,bf16-cl; CFORMATS=fp16-cl
  EXTRA=(--depth 18 --rounds 5 --iters 30 --max-seconds 1)
  BACKENDS=torch,cuda-graph,onnxruntime,onnxruntime-noopt,tensorrt
fi
{ nvidia-smi 2>&1 | head -20; $PY -c 'import torch, sys; print(sys.version); print("torch", torch.__version__, "cuda",
  torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
  $PY -m pip list 2>/dev/null | grep -iE '^(torch|torchvision|onnx|onnxruntime|onnxscript|numpy|click|rich|matplotlib|pytest|tensorrt) '
  grep -m1 'model name' /proc/cpuinfo; nproc; grep -m1 -o -w -E 'avx512_vnni|avx512_bf16|amx_tile|amx_bf16|amx_int8' /proc/cpuinfo | sort -u
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step "pytest -m gpu" 170 $PY -m pytest -m gpu -x -q -p no:cacheprovider -o addopts="" tests/test_bench.py \
  tests/test_bench_formats.py tests/test_fold.py
cp "$OUT/log.txt" "$OUT/pytest-gpu.txt"
step "bench part 1: eager and CUDA graphs, every format" 200 $PY benchmarks/run_bench.py --device $DEV --batch $BATCH \
  --backends $BACKENDS --formats $FORMATS "${EXTRA[@]}" --git-sha "${GIT_SHA:-}" --out "$OUT"
NAME=$DEV-diracnet18.json
step "bench part 2: torch.compile (freezing), fp32" 150 $PY benchmarks/run_bench.py --device $DEV --batch $CBATCH \
  --backends torch-compile --formats fp32 "${EXTRA[@]}" --git-sha "${GIT_SHA:-}" --merge-into "$OUT/$NAME" --out "$OUT"
step "torchvision ResNet-18 vs ours" 60 $PY benchmarks/torchvision_check.py --device $DEV --out "$OUT" \
  $([[ -n ${DRY_RUN:-} ]] && echo --batch 1 --formats fp32 --backends torch --rounds 2)
step "bench part 3: torch.compile (freezing), $CFORMATS" 150 $PY benchmarks/run_bench.py --device $DEV \
  --batch $CBATCH --backends torch-compile --formats $CFORMATS "${EXTRA[@]}" --git-sha "${GIT_SHA:-}" \
  --merge-into "$OUT/$NAME" --out "$OUT"
echo "== done after $(( $(date +%s) - start ))s" | tee -a "$OUT/log.txt"
