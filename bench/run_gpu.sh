#!/usr/bin/env bash
# The GPU benchmarks of the real trainers (issue 18 item 8), for BENCHMARKS.md ("On a GPU"):
#   bert pretrain --bf16 --compile on make-data records, BERT-base seq 128 and BERT-large seq 512,
#     sequences/s and MFU from the trainer's own log, against transformers' BertForPreTraining
#     stepped on the same records (bench_trainers.py hf-bert);
#   detr train (R50, bf16) on COCO-format JPEGs, images/s from its log, and the DETR-R50 step
#     against transformers' DetrForObjectDetection (bench_detr.py);
#   bert classify (BERT-base, random weights, bf16) on the demo's book task, eager and --compile
#     (the whole step), sequences/s from its log;
#   the synthetic model benchmarks of before (bench_bert_model.py), last.
#
#     python bench/bench_trainers.py data gpu_bench/data       # first, here (30 s of CPU): the device skips it
#     bash bench/run_gpu.sh gpu_bench [all|bert|detr|finetune|model]   # on the first CUDA device
#     SMOKE=1 bash bench/run_gpu.sh /tmp/smoke                   # the same steps, tiny, on the CPU
#
# One command keeps to BUDGET seconds (default 570: a lent device's 10-minute call, less the copy
# back): each step's timeout is cut to what is left, and a step with under 30 s left is skipped
# (said in OUT/skipped.txt); what finished is in OUT. Run the parts as separate calls.
set -u
BUDGET=${BUDGET:-570}
cap() {  # the timeout for a step that wants $1 s: cut to the budget left; fails (and says so) under 30 s
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then echo "skipped (budget of ${BUDGET}s spent): $2" | tee -a "$OUT/skipped.txt" >&2; return 1; fi
  echo $(($1 < left ? $1 : left))
}
OUT=${1:-gpu_bench}
PART=${2:-all}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BD="python3 -m bertdetr.cli"
VOCAB=tests/data/bert/vocab-uncased.txt
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; BASE=tiny; LARGE=mini; B128=8; B512=2; STEPS=6; LOG=1; COMPILE=""; PREC=""; DETR_MODEL=r18; DETR_B=2
  HF_ARGS="--device cpu --steps 2 --warmup 1 --num-workers 0"; SMOKE_FLAG=--smoke; FT_B=8; FT_EPOCHS=0.2
else
  DEV=cuda; BASE=base; LARGE=large; B128=256; B512=32; STEPS=80; LOG=10; COMPILE=--compile; PREC=--bf16
  DETR_MODEL=r50; DETR_B=8; HF_ARGS="--compile --steps 40"; SMOKE_FLAG=""; FT_B=32; FT_EPOCHS=6
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
fi
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
T=$(cap 300 data) && timeout "$T" python3 bench/bench_trainers.py data "$OUT/data" $SMOKE_FLAG || exit 1

bert_run() {  # size seq masked batch
  local run="$OUT/bert-$1-$2" T
  T=$(cap 240 "bert pretrain $1 $2") || return 0
  timeout "$T" $BD bert pretrain --input-file "$OUT/data/books_$2.tfrecord" --output-dir "$run" --overwrite \
      --model-size "$1" --vocab-file $VOCAB --batch-size "$4" --num-train-steps "$STEPS" --num-warmup-steps 2 \
      --log-every "$LOG" --save-every 100000 --no-progress --device $DEV $PREC $COMPILE 2>&1 | tail -3
  python3 bench/bench_trainers.py bert-figures "$run" --model-size "$1" --seq "$2" --masked "$3" | tee -a "$OUT/bert_trainer.jsonl"
  T=$(cap 200 "transformers $1 $2") || return 0
  timeout "$T" python3 bench/bench_trainers.py hf-bert "$OUT/data/books_$2.tfrecord" --model-size "$1" --batch "$4" \
      $HF_ARGS | tee -a "$OUT/bert_trainer.jsonl"
}
if [ "$PART" = all ] || [ "$PART" = bert ]; then
  bert_run $BASE 128 20 $B128
  bert_run $LARGE 512 80 $B512
fi

if [ "$PART" = all ] || [ "$PART" = detr ]; then
  python3 - "$OUT" "$DETR_MODEL" "$DETR_B" "$DEV" "${SMOKE:-0}" <<'PY'
import json, sys
out, preset, batch, device, smoke = sys.argv[1:]
data = {"train_ann": f"{out}/data/coco/train.json", "train_images": f"{out}/data/coco/images"}
if smoke == "1":
    data.update(train_scales=[48, 64], max_size=96, crop_resize=[56], crop_size=[32, 48], test_size=64)
cfg = {"data": data, "model": {"preset": preset},
       "train": {"output_dir": f"{out}/detr-{preset}", "epochs": 1, "batch_size": int(batch), "num_workers": 0 if smoke == "1" else 6,
                 "log_every": 1 if smoke == "1" else 5, "progress": False, "device": device, "bf16": smoke != "1",
                 "save_every": 100, "eval_every": 100}}
json.dump(cfg, open(f"{out}/detr_train.json", "w"), indent=1)
PY
  T=$(cap 300 "detr train") && timeout "$T" $BD detr train "$OUT/detr_train.json" --overwrite 2>&1 | tail -3
  python3 bench/bench_trainers.py detr-figures "$OUT/detr-$DETR_MODEL" | tee -a "$OUT/detr_trainer.jsonl"
  if [ "${SMOKE:-0}" != 1 ]; then
    T=$(cap 150 bench_detr) && timeout "$T" python3 bench/bench_detr.py --device cuda --batch 4 --repeats 20 2>&1 | tee "$OUT/detr_gpu.txt"
  fi
fi

if [ "$PART" = all ] || [ "$PART" = finetune ]; then
  task="$OUT/data/book_task"
  python3 bench/bench_trainers.py bert-config $BASE "$task/bert_config_$BASE.json"
  for how in eager compiled; do
    flags=$PREC; [ $how = compiled ] && flags="$PREC $COMPILE"
    T=$(cap 200 "bert classify $how") || break
    timeout "$T" $BD bert classify --task-name tsv --data-dir "$task" --output-dir "$OUT/classify-$how" --overwrite \
        --bert-config-file "$task/bert_config_$BASE.json" --vocab-file $VOCAB --do-train --max-seq-length 128 \
        --pad-to-multiple-of 32 --train-batch-size $FT_B --num-train-epochs $FT_EPOCHS --log-every $LOG \
        --save-checkpoints-steps 100000 --no-progress --device $DEV $flags 2>&1 | tail -2
    python3 bench/bench_trainers.py classify-figures "$OUT/classify-$how" | tee -a "$OUT/finetune_trainer.jsonl"
  done
fi

if [ "${SMOKE:-0}" != 1 ] && { [ "$PART" = all ] || [ "$PART" = model ]; }; then
  # last, as torch.compile (of our BERT-base step, fp32 and bf16, against our eager step) takes longest
  T=$(cap 330 bench_bert_model) && timeout "$T" python3 bench/bench_bert_model.py --device cuda --configs small,base --batch 64 --repeats 20 \
      --compile-configs base --json "$OUT/bert_gpu.json" 2>&1 | tee "$OUT/bert_gpu.txt"
fi
