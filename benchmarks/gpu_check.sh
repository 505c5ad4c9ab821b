#!/usr/bin/env bash
# The GPU checks in one go, on one CUDA GPU (sized for under ~6 minutes on one H100; not yet run on one):
#   bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]          (default: benchmarks/, next to the CPU JSONs)
# 1. the `gpu` tests (train, evaluate, predict on CUDA end to end at small size);
# 2. train_throughput.py: real path / bare loop, 3 encoders at 384 px, batch 8 and batch 32;
# 3. sweep_time.py: real `heritage_seg.train` runs, 3 epochs per encoder on 418 generated images at 384 px,
#    projected to the 9-run, 50-epoch sweep (end-of-fit report included);
# 4. predict_benchmark.py: one 4096² scan, without and with TTA.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA GPU here')"
NAME="$(python -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())")"   # e.g. h100, h200
stamp() { echo "[$(date +%T)] $*"; }
stamp "device: $(python -c 'import torch; print(torch.cuda.get_device_name())')"
stamp "1/4 gpu tests"
python -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
stamp "2/4 train throughput, batch 8"
python benchmarks/train_throughput.py --steps 30 --warmup 10 --batch-size 8 --out "$OUT/train_${NAME}_b8.json"
stamp "2/4 train throughput, batch 32"
python benchmarks/train_throughput.py --steps 12 --warmup 4 --batch-size 32 --out "$OUT/train_${NAME}_b32.json"
stamp "3/4 sweep projection (batch 8)"
python benchmarks/sweep_time.py --epochs 3 --out "$OUT/sweep_time_${NAME}.json"
stamp "4/4 predict, one 4096² scan"
python benchmarks/predict_benchmark.py --sizes 4096 --out "$OUT/predict_${NAME}.json"
stamp "done: JSONs in $OUT"
