#!/usr/bin/env bash
# The GPU benchmarks in one go, as run for BENCHMARKS.md ("On a GPU"): BERT pretraining model
# and DETR-R50 against transformers, same weights, on the first CUDA device.
#
#     bash bench/run_gpu.sh OUT_DIR
set -u
OUT=${1:-gpu_bench}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 bench/bench_detr.py --device cuda --batch 4 --repeats 20 2>&1 | tee "$OUT/detr_gpu.txt"
# last, as torch.compile (of our BERT-base step, fp32 and bf16, against our eager step) takes longest
timeout 330 python3 bench/bench_bert_model.py --device cuda --configs small,base --batch 64 --repeats 20 \
    --compile-configs base --json "$OUT/bert_gpu.json" 2>&1 | tee "$OUT/bert_gpu.txt"
