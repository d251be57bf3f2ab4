#!/usr/bin/env bash
# The GPU check: under 10 minutes on one GPU, from the project root, after `make setup`.
#   1. every engine method on demo for one epoch, bf16 on cuda (exit code and HR@10 each);
#   2. P5-SID's training loop at t5-small size (d_model 512, 6+6 layers, random weights: no hub
#      here) for 200 steps: examples/s and peak GPU memory (benchmarks/gpu_throughput.py);
#   3. P5-SID on demo in fp32 on cuda and on cpu: their per-user arrays compared (largest
#      difference, users that differ, paired tests; trained and evaluated on each device, same seed).
# Usage: bash benchmarks/gpu_check.sh [RESULTS_DIR]   (default: a fresh temporary folder)
#   METHODS="p5-sid tiger" bash benchmarks/gpu_check.sh   checks only those in step 1
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH=.venv/bin/bench
OUT=${1:-$(mktemp -d)}
export GENREC_BENCH_CACHE=${GENREC_BENCH_CACHE:-$OUT/cache}
echo "gpu_check: results in $OUT"
.venv/bin/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
status=0
for method in ${METHODS:-p5-sid p5-rid p5-cid p5-semid idgenrec setrec tiger unisrec}; do
  started=$(date +%s)
  if record=$($BENCH run --method "$method" --dataset demo --set device=cuda --set precision=bf16 --set epochs=1 \
        --results-dir "$OUT/bf16" --quiet | tail -n 1); then
    echo "engine_bf16_cuda[$method]: ok in $(( $(date +%s) - started )) s, HR@10 $(.venv/bin/python -c \
      "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['HR@10'])" "$record")"
  else
    echo "engine_bf16_cuda[$method]: FAILED"; status=1
  fi
done
.venv/bin/python benchmarks/gpu_throughput.py --steps 200 || status=1
for device in cuda cpu; do
  $BENCH run --method p5-sid --dataset demo --set device=$device --set precision=fp32 \
    --results-dir "$OUT/$device" --quiet | tail -n 1 > "$OUT/$device.path" || status=1
done
.venv/bin/python - "$OUT/cuda.path" "$OUT/cpu.path" <<'PY' || status=1
import sys
import numpy as np
from pathlib import Path
from bench.results import per_user, read_record
from bench.statistics import paired_tests
cuda, cpu = (read_record(Path(open(path).read().strip())) for path in sys.argv[1:3])
for metric in ("HR@10", "NDCG@10"):
    a, b = per_user(cuda, metric), per_user(cpu, metric)
    differing = int((~np.isclose(a, b, rtol=0, atol=1e-6)).sum())
    t_p, wilcoxon_p = paired_tests(a, b)
    print(f"per_user_max_abs_difference_cuda_vs_cpu[{metric}]: {float(np.abs(a - b).max()):.6f} "
          f"(means {cuda['metrics'][metric]:.4f} cuda, {cpu['metrics'][metric]:.4f} cpu; "
          f"{differing} of {len(a)} users differ; paired t p {t_p:.3g}, Wilcoxon p {wilcoxon_p:.3g})")
PY
exit $status
