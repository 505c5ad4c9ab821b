#!/usr/bin/env bash
# The GPU checks in one go, on one CUDA GPU, inside a time budget (a lent GPU is short of time):
#   bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]       (default: benchmarks/, next to the CPU JSONs)
#   GPU_CHECK_BUDGET_S=480 (default): a step is given at most the time left, and skipped when too little is left;
#   GPU_CHECK_TINY=1: the same steps at tiny sizes on the CPU, to check this script before a GPU run (figures
#   meaningless; the gpu tests skip there).
# Steps, most wanted first (each one's failure is logged and the next one still runs; exit 1 if any failed):
# 1. train_throughput.py: real path / bare loop, 3 encoders at 384 px, batch 8, on 418 generated images, each
#    path timed 3 times alternating (one 30-step window per path was noise-dominated at batch 8 on an H200);
# 2. sweep_time.py: real `heritage_seg.train` runs, 3 epochs per encoder on the same images, projected to the
#    9-run, 50-epoch sweep (end-of-fit report included), batch 8;
# 3. predict_benchmark.py --end-to-end: the whole predict path on one 4096² scan, warm, without and with TTA;
# 4. train_throughput.py at batch 32;
# 5. the `gpu` tests (train, evaluate, predict on CUDA end to end at small size);
# 6. torch.profiler tables of ten ConvNeXt-T training steps of the real path (where the time goes);
# 7. sweep_time.py at the seed's batch 96.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
TINY="${GPU_CHECK_TINY:-0}"
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_BUDGET_S:-480} ))
stamp() { echo "[$(date +%T)] $*"; }
if [ "$TINY" = 1 ]; then
    NAME=tiny_cpu
    DATA="$(mktemp -d)/art"
    TP=(--images 24 --image-size 64 --steps 3 --warmup 1)
    SW=(--images 24 --image-size 64 --epochs 3 --encoders convnext)
    PR=(--end-to-end 512 384 --window 128)
else
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA GPU here')" \
        || exit 2
    NAME="$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")"   # h100, h200
    DATA="${TMPDIR:-/tmp}/heritage_seg_gpu_check/art418"   # generated once, shared by the benchmarks
    mkdir -p "$(dirname "$DATA")"
    TP=(--images 418 --image-size 384)
    SW=(--images 418 --image-size 384 --epochs 3)
    PR=(--end-to-end 4096 4096 --window 384)
    stamp "device: $(python -c 'import torch; print(torch.cuda.get_device_name(), torch.__version__)')"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv,noheader || true
fi
FAILED=() SKIPPED=()
step() {  # step NAME MAX_SECONDS command...: at most MAX_SECONDS, never past the deadline
    local name=$1 max=$2 left rc
    shift 2
    left=$(( DEADLINE - $(date +%s) ))
    if (( left < 30 )); then stamp "SKIPPED $name: ${left}s of the budget left"; SKIPPED+=("$name"); return; fi
    (( max > left )) && max=$left
    stamp "$name (at most ${max}s)"
    timeout --signal=INT --kill-after=15 "$max" "$@"
    rc=$?
    if (( rc == 0 )); then stamp "done: $name"; else stamp "FAILED $name (exit $rc)"; FAILED+=("$name"); fi
}
step "train throughput, batch 8" 180 \
    python benchmarks/train_throughput.py "${TP[@]}" --root "$DATA" --steps 50 --warmup 10 --repeats 3 \
    --batch-size 8 --out "$OUT/train_${NAME}_b8.json"
step "sweep projection, batch 8" 200 \
    python benchmarks/sweep_time.py "${SW[@]}" --root "$DATA" --batch-size 8 --out "$OUT/sweep_time_${NAME}.json"
step "predict end to end, one 4096² scan" 90 \
    python benchmarks/predict_benchmark.py "${PR[@]}" --out "$OUT/predict_${NAME}.json"
step "train throughput, batch 32" 120 \
    python benchmarks/train_throughput.py "${TP[@]}" --root "$DATA" --steps 12 --warmup 4 --batch-size 32 \
    --out "$OUT/train_${NAME}_b32.json"
step "gpu tests" 150 python -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
step "profile, ConvNeXt-T batch 8" 60 \
    python benchmarks/train_throughput.py "${TP[@]}" --root "$DATA" --encoders convnext --steps 10 --warmup 5 \
    --batch-size 8 --profile "$OUT/profile_${NAME}_b8.txt"
step "sweep projection, batch 96" 150 \
    python benchmarks/sweep_time.py "${SW[@]}" --root "$DATA" --batch-size 96 --out "$OUT/sweep_time_${NAME}_b96.json"
stamp "JSONs in $OUT; failed: ${FAILED[*]:-none}; skipped: ${SKIPPED[*]:-none}"
(( ${#FAILED[@]} == 0 ))
