#!/usr/bin/env bash
# GPU check, for the day a machine with an NVIDIA GPU is lent: in under 8 minutes on a fresh
# machine it installs the project with TensorFlow's CUDA libraries, trains with
# `colorize train --gpu` on 1 GPU (one Ray Train worker) on the built-in sample photos with a
# small budget, serves that model on a GPU replica and measures it through colorize.client,
# then does the same on the CPU (the GPU hidden), and prints the figures side by side.
#
#   bash bench/gpu_check.sh                  # from the repository root
#   SKIP_INSTALL=1 bash bench/gpu_check.sh   # colorize[gpu] already installed
#
# Settings (environment): OUT (default /tmp/colorize-gpu-check), EPOCHS (6), CPUS (the
# worker's and replica's CPUs, default: all but 2, at most 8), SECONDS_LOAD (15), CONCURRENCY (16).
# Writes OUT/gpu_check.json and the logs of each step in OUT. The commands' arguments are
# checked against colorize's parser by tests/test_gpu_check.py, so they cannot rot unseen.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/colorize-gpu-check}
EPOCHS=${EPOCHS:-6}
SECONDS_LOAD=${SECONDS_LOAD:-15}
CONCURRENCY=${CONCURRENCY:-16}
CORES=$(nproc)
CPUS=${CPUS:-$(( CORES > 10 ? 8 : (CORES > 3 ? CORES - 2 : 1) ))}
PORT=${PORT:-8321}
PYTHON=${PYTHON:-python3}
export TF_CPP_MIN_LOG_LEVEL=2 RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
START=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || {
  echo "gpu_check: nvidia-smi found no GPU; this script is for a machine with one" >&2; exit 1; }

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  say "installing colorize[gpu] (TensorFlow with its CUDA libraries)"
  "$PYTHON" -m pip install -q -e ".[gpu]" 2>&1 | tail -3
fi
"$PYTHON" - <<'EOF'
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__} sees {len(gpus)} GPU(s): {[g.name for g in gpus]}")
raise SystemExit(0 if gpus else "TensorFlow sees no GPU: check the driver and colorize[gpu]")
EOF

say "training on 1 GPU: colorize train --gpu"
timeout 240 colorize train --data sample --gpu --workers 1 --cpus-per-worker "$CPUS" --config seed --epochs "$EPOCHS" --out "$OUT/train-gpu" > "$OUT/train-gpu.log" 2>&1 || {
  tail -30 "$OUT/train-gpu.log" >&2; exit 1; }
grep -E "epoch [0-9]+/" "$OUT/train-gpu.log" | tail -2 || true

say "training on the CPU ($CPUS CPUs, the GPU hidden)"
CUDA_VISIBLE_DEVICES= timeout 240 colorize train --data sample --workers 1 --cpus-per-worker "$CPUS" --config seed --epochs "$EPOCHS" --out "$OUT/train-cpu" > "$OUT/train-cpu.log" 2>&1 || {
  tail -30 "$OUT/train-cpu.log" >&2; exit 1; }
grep -E "epoch [0-9]+/" "$OUT/train-cpu.log" | tail -2 || true

MODEL="$OUT/train-gpu/model"

# serve_and_measure LABEL LOG: `colorize serve` (its flags in the variable FLAGS) in the
# background until it serves, bench/endpoint_rate.py against it, then a SIGINT drains it.
serve_and_measure() {
  local label=$1 log=$2 pid
  colorize serve "$MODEL" --port "$PORT" --max-batch-size 32 $FLAGS > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 180); do
    grep -q "serving until" "$log" && break
    kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; return 1; }
    sleep 1
  done
  "$PYTHON" bench/endpoint_rate.py "http://127.0.0.1:$PORT/" --concurrency "$CONCURRENCY" --seconds "$SECONDS_LOAD" --label "$label" --json | tee "$OUT/$label.rate"
  kill -INT "$pid"
  wait "$pid" || true
}

say "serving on a GPU replica"
FLAGS="--gpus-per-replica 1 --cpus-per-replica 2"
serve_and_measure serve-gpu "$OUT/serve-gpu.log"

say "serving on a CPU replica ($CPUS CPUs, the GPU hidden)"
FLAGS="--gpus-per-replica 0 --cpus-per-replica $CPUS"
CUDA_VISIBLE_DEVICES= serve_and_measure serve-cpu "$OUT/serve-cpu.log"

say "done; figures:"
OUT="$OUT" "$PYTHON" - <<'EOF'
import json, os
from pathlib import Path

out = Path(os.environ["OUT"])
rows = {}
for device in ("cpu", "gpu"):
    metrics = json.loads((out / f"train-{device}" / "metrics.json").read_text())
    rate = json.loads((out / f"serve-{device}.rate").read_text().splitlines()[-1])
    rows[device] = {
        "train_images_per_s": (metrics.get("distributed") or {}).get("last_epoch_images_per_second"),
        "train_seconds": metrics.get("train_seconds"),
        "serve_requests_per_s": rate["rate"], "serve_p50_ms": rate["p50_ms"],
        "serve_p95_ms": rate["p95_ms"], "serve_errors": rate["errors"],
    }
(out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
print(f"| figure | CPU | GPU | GPU / CPU |\n| --- | ---: | ---: | ---: |")
for key in rows["gpu"]:
    cpu, gpu = rows["cpu"][key], rows["gpu"][key]
    ratio = f"{gpu / cpu:.2f}" if isinstance(cpu, (int, float)) and cpu else ""
    show = lambda v: f"{v:.1f}" if isinstance(v, float) else str(v)
    print(f"| {key} | {show(cpu)} | {show(gpu)} | {ratio} |")
EOF
say "written $OUT/gpu_check.json"
