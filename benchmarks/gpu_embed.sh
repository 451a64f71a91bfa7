#!/usr/bin/env bash
# The whole GPU embedding check in one command (one device call, well under 8 minutes):
# build a randomly initialised CLIP ViT-B/32 (random weights do not change throughput) and
# 4,096 synthetic 800x600 JPEGs of about 120 KB, then time on the same files the reference's
# path (sequential PIL + CLIP's processor + fp32, batch 128), ours (bf16, GPU JPEG decode),
# ours with CPU decode, and the model alone; print the table and copy the JSON to $OUT.
#
#   bash benchmarks/gpu_embed.sh            # on the GPU machine
#   SMOKE=1 bash benchmarks/gpu_embed.sh    # 64 images, tiny model, CPU: checks the script runs
#
# Needs torch, transformers, sentence-transformers, pillow, numpy (torchvision for GPU
# decode); concept is used from src/ (PYTHONPATH), so its other dependencies need not be there.
# Every step has its own time limit, so a slow step still leaves the results of the others.
set -u
cd "$(dirname "$0")/.."

export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "${SMOKE:-0}" = 1 ]; then
    N=64 MODEL=random:tiny DEVICE=cpu REPEAT=1 CACHE="${CACHE:-/tmp/concept-gpu-embed-smoke}"
    T_PREPARE=300 T_RUN=300 T_EXTRA=120
else
    N=4096 MODEL=random:vit-b32 DEVICE=cuda REPEAT=3 CACHE="${CACHE:-benchmarks/cache}"
    T_PREPARE=150 T_RUN=240 T_EXTRA=60
fi
RESULTS="${OUT:-benchmarks/out}"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_embed.log"
exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
step() { echo; echo "== $1 (t=$(( $(date +%s) - START )) s)"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
echo "cores: $(nproc)"
timeout 120 python - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("torch", "torchvision", "transformers", "sentence_transformers", "PIL", "numpy", "psutil"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as exc:  # noqa: BLE001
        print(f"{name} missing ({type(exc).__name__}: {exc})")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
import subprocess
check = ("import sys, concept.embedding.clip; print(sorted({m.split('.')[0] for m in sys.modules} & "
         "{'umap', 'hdbscan', 'fast_hdbscan', 'pandas', 'numba', 'sklearn'}) or 'nothing heavy')")
print("import concept.embedding.clip also loads:",
      subprocess.run([sys.executable, "-c", check], capture_output=True, text=True).stdout.strip() or "FAILED")
from concept.embedding.gpu_decode import jpeg_decoder
print("GPU JPEG decoder:", "available" if jpeg_decoder("cuda" if torch.cuda.is_available() else "cpu")
      else "not available (CPU decode)")
EOF

step "prepare: $MODEL and $N synthetic JPEGs in $CACHE"
timeout -k 10 "$T_PREPARE" python benchmarks/embed.py --prepare --model "$MODEL" \
    --images "synthetic:$N" --cache "$CACHE" || echo "prepare failed or timed out (rc=$?)"

step "reference vs ours vs model only ($DEVICE)"
timeout -k 10 "$T_RUN" python benchmarks/embed.py --model "$MODEL" --images "synthetic:$N" \
    --cache "$CACHE" --device "$DEVICE" --repeat "$REPEAT" \
    --paths reference,ours,model-only,ours-cpu-decode --out "$RESULTS/embed-gpu.json" \
    || echo "benchmark failed or timed out (rc=$?); rows finished so far are in $RESULTS/embed-gpu.json"

step "ours and model only at batch 1024"
timeout -k 10 "$T_EXTRA" python benchmarks/embed.py --model "$MODEL" --images "synthetic:$N" \
    --cache "$CACHE" --device "$DEVICE" --repeat "$REPEAT" --batch-size 1024 \
    --paths ours,model-only --out "$RESULTS/embed-gpu-b1024.json" \
    || echo "batch-1024 run failed or timed out (rc=$?)"

step "done"
ls -l "$RESULTS"/embed-gpu*.json 2>/dev/null
