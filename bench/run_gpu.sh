#!/usr/bin/env bash
# The GPU benchmarks of the real trainers (issue 18 item 8), for BENCHMARKS.md ("On a GPU"):
#   bert pretrain --bf16 --compile on make-data records, BERT-base seq 128 and BERT-large seq 512,
#     sequences/s and MFU from the trainer's own log, against transformers' BertForPreTraining
#     stepped on the same records (bench_trainers.py hf-bert);
#   detr train (R50, bf16) on COCO-format JPEGs, images/s from its log, against transformers'
#     DetrForObjectDetection stepped on the same batches (bench_trainers.py hf-detr);
#   later (part "rest"): detr train with compile, bench_detr.py's model step against transformers', bert classify
#     (BERT-base, random weights, bf16) eager and --compile, bert ner on CLUENER's layout (softmax compiled,
#     --crf eager and compiled: what the CRF's loops cost a GPU step), the synthetic model benchmarks, the
#     Python pipelines.
#
# A lent device gives a session 15 minutes in all, its start included: one call of the part "key"
# (the default) gets every goal figure of the issue; "rest" is for a second call if time is left.
#
#   bash bench/run_gpu.sh wheels       # here, first: what the device's Python lacks (google-crc32c) -> .gpu_wheels
#   device call, carry [".gpu_wheels"], timeout_s 600:
#     PACK=$OUT/gpu_bench.tgz bash bench/run_gpu.sh /tmp/gpu_bench key 2>&1 | tee $OUT/log.txt
#   SMOKE=1 bash bench/run_gpu.sh /tmp/smoke all   # every step, tiny, on the CPU (tests/bench/test_run_gpu.py)
#
# Parts: key | rest | all | bert | detr | finetune | ner | model. The data is made in OUT/data unless there
# (~30 s; 50 MB, too much to travel with the tree). One command keeps to BUDGET seconds (default
# 570: a 10-minute call less the copy back): each step's timeout is cut to what is left, and a step
# with under 30 s left is skipped (said in OUT/skipped.txt); what finished is in OUT, and with
# PACK=FILE.tgz its figures, logs, scalars and profile reports (no data, checkpoints or weights) are
# packed there, the profiles' traces apart in FILE-traces.tgz. Each trainer's last 3 steps are profiled
# (--profile-steps: RUN/profile/*.txt, the GPU's busy share and each kernel's time; the figures leave
# those steps out): what tells, after the device is gone, where a step's time went.
set -u
if [ "${1:-}" = wheels ]; then  # the device's Python is 3.12 and cannot reach an index
  exec python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .gpu_wheels google-crc32c 'tokenizers>=0.23.3'
fi
# (tokenizers: 0.23.1 and 0.23.2, the device's, give a long text's first two windows only, which the
# BERT pipelines refuse; google-crc32c: the records' checksums in C)
BUDGET=${BUDGET:-570}
OUT=${1:-gpu_bench}
PART=${2:-key}
case "$PART" in key|rest|all|bert|detr|finetune|ner|model) ;;
  *) echo "run_gpu.sh: unknown part $PART (key, rest, all, bert, detr, finetune, ner, model; or: run_gpu.sh wheels)" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
cap() {  # the timeout for a step that wants $1 s: cut to the budget left; fails (and says so) under 30 s
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then echo "skipped (budget of ${BUDGET}s spent): $2" | tee -a "$OUT/skipped.txt" >&2; return 1; fi
  echo $(($1 < left ? $1 : left))
}
if [ "${SMOKE:-0}" != 1 ] && ls .gpu_wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_site \
      .gpu_wheels/*.whl && export PYTHONPATH=/tmp/gpu_site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BD="python3 -m bertdetr.cli"
VOCAB=tests/data/bert/vocab-uncased.txt
ZH_VOCAB=tests/data/bert/zh/vocab_zh.txt
if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; BASE=tiny; LARGE=mini; B128=8; B512=2; STEPS=6; LOG=1; COMPILE=""; PREC=""; DETR_MODEL=r18; DETR_B=2
  HF_ARGS="--device cpu --steps 2 --warmup 1 --num-workers 0"; HF_DETR_ARGS="--steps 2 --warmup 1"
  SMOKE_FLAG=--smoke; FT_B=8; FT_EPOCHS=0.2; NER_EPOCHS=1
else
  DEV=cuda; BASE=base; LARGE=large; B128=256; B512=32; STEPS=80; LOG=10; COMPILE=--compile; PREC=--bf16
  DETR_MODEL=r50; DETR_B=8; HF_ARGS="--compile --steps 40"; HF_DETR_ARGS="--steps 30 --warmup 5"
  SMOKE_FLAG=""; FT_B=32; FT_EPOCHS=6; NER_EPOCHS=2
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
fi
if [ "${SMOKE:-0}" != 1 ]; then  # make-data's C module (gitignored, so not carried): the data step at its speed
  python3 setup.py -q build_ext --inplace >/dev/null 2>&1 || echo "no C compiler: make-data in pure Python" >&2
fi
python3 -c "import sys, torch, transformers, bertdetr.bert.data.records as r; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'google-crc32c', r._gcrc is not None)" | tee -a "$OUT/gpu.txt"
T=$(cap 300 data) && timeout "$T" python3 bench/bench_trainers.py data "$OUT/data" $SMOKE_FLAG || exit 1

ours_bert() {  # size seq masked batch [compile mode]: bert pretrain, its logged sequences/s and MFU; then 3 steps profiled
  local run="$OUT/bert-$1-$2${5:+-$5}" T
  [ "${SMOKE:-0}" = 1 ] && [ -n "${5:-}" ] && return 0  # (the smoke run compiles nothing)
  T=$(cap 240 "bert pretrain $1 $2 ${5:-}") || return 0
  timeout "$T" $BD bert pretrain --input-file "$OUT/data/books_$2.tfrecord" --output-dir "$run" --overwrite \
      --model-size "$1" --vocab-file $VOCAB --batch-size "$4" --num-train-steps $((STEPS + 4)) --num-warmup-steps 2 \
      --log-every "$LOG" --save-every 100000 --no-progress --device $DEV $PREC $COMPILE ${5:+--compile-mode $5} \
      --profile-steps $((STEPS + 2)) $((STEPS + 4)) 2>&1 | grep -v '^USDT:' | tail -3
  python3 bench/bench_trainers.py bert-figures "$run" --model-size "$1" --seq "$2" --masked "$3" | tee -a "$OUT/bert_trainer.jsonl"
}
hf_bert() {  # size seq batch: transformers' step on the same records
  local T
  T=$(cap 200 "transformers bert $1 $2") || return 0
  timeout "$T" python3 bench/bench_trainers.py hf-bert "$OUT/data/books_$2.tfrecord" --model-size "$1" --batch "$3" \
      $HF_ARGS | tee -a "$OUT/bert_trainer.jsonl"
}
ours_detr() {  # [compiled]: detr train (eager, or with compile), its logged images/s
  local name="detr-$DETR_MODEL${1:+-$1}" T
  [ "${SMOKE:-0}" = 1 ] && [ -n "${1:-}" ] && return 0  # inductor on a CPU takes minutes (tests/detr test the compiled step)
  python3 - "$OUT" "$name" "$DETR_MODEL" "$DETR_B" "$DEV" "${SMOKE:-0}" "${1:-}" <<'PY'
import json, sys
out, name, preset, batch, device, smoke, compiled = sys.argv[1:]
data = {"train_ann": f"{out}/data/coco/train.json", "train_images": f"{out}/data/coco/images"}
if smoke == "1":
    data.update(train_scales=[48, 64], max_size=96, crop_resize=[56], crop_size=[32, 48], test_size=64)
epochs = 2 if compiled else 1
steps = epochs * -(-len(json.load(open(data["train_ann"]))["images"]) // int(batch))
cfg = {"data": data, "model": {"preset": preset},
       "train": {"output_dir": f"{out}/{name}", "epochs": epochs, "batch_size": int(batch),
                 "profile_steps": [steps - 2, steps],  # the last 3 steps (the figures leave them out)
                 "num_workers": 0 if smoke == "1" else 6, "log_every": 1 if smoke == "1" else 5, "progress": False,
                 "device": device, "bf16": smoke != "1", "compile": bool(compiled), "save_every": 100, "eval_every": 100}}
json.dump(cfg, open(f"{out}/{name}.json", "w"), indent=1)
PY
  T=$(cap 200 "detr train ${1:-eager}") || return 0
  timeout "$T" $BD detr train "$OUT/$name.json" --overwrite 2>&1 | grep -v '^USDT:' | tail -3
  python3 bench/bench_trainers.py detr-figures "$OUT/$name" | tee -a "$OUT/detr_trainer.jsonl"
}
hf_detr() {  # transformers' DETR on the same config's batches
  local T
  T=$(cap 150 "transformers detr") || return 0
  timeout "$T" python3 bench/bench_trainers.py hf-detr "$OUT/detr-$DETR_MODEL.json" $HF_DETR_ARGS | tee -a "$OUT/detr_trainer.jsonl"
}
detr_model_step() {  # bench_detr.py: the model step (fp32, one image size) against transformers'
  local T
  [ "${SMOKE:-0}" = 1 ] && return 0
  T=$(cap 150 bench_detr) || return 0
  timeout "$T" python3 bench/bench_detr.py --device cuda --batch 4 --repeats 20 2>&1 | tee "$OUT/detr_gpu.txt"
}
finetune() {  # bert classify, eager and compiled, its logged sequences/s
  local task="$OUT/data/book_task" how flags T
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
}
ner() {  # bert ner on CLUENER's layout (BERT-base from random weights over the Chinese vocabulary):
  # softmax compiled, then --crf eager and compiled (the CRF's loops run eager in both), each its logged
  # sequences/s and its last 3 steps profiled: what the CRF costs a GPU step
  local data="$OUT/data/cluener" name flags steps T
  steps=$(( $(wc -l < "$data/train.json") * NER_EPOCHS / FT_B ))  # Google's int(examples / batch * epochs)
  python3 bench/bench_trainers.py bert-config $BASE "$data/bert_config_$BASE.json" --vocab-size "$(wc -l < $ZH_VOCAB)"
  for name in softmax-compiled crf-eager crf-compiled; do
    flags=$PREC
    case $name in *compiled) flags="$flags $COMPILE" ;; esac
    case $name in crf*) flags="$flags --crf" ;; esac
    [ "${SMOKE:-0}" = 1 ] && [ "$name" != crf-eager ] && continue  # (the smoke run compiles nothing)
    T=$(cap 150 "bert ner $name") || break
    timeout "$T" $BD bert ner --data-dir "$data" --output-dir "$OUT/ner-$name" --overwrite \
        --bert-config-file "$data/bert_config_$BASE.json" --vocab-file $ZH_VOCAB --do-train --max-seq-length 128 \
        --pad-to-multiple-of 32 --train-batch-size $FT_B --num-train-epochs $NER_EPOCHS --log-every $LOG \
        --save-checkpoints-steps 100000 --profile-steps $((steps - 2)) $steps --no-progress --device $DEV $flags \
        2>&1 | grep -v '^USDT:' | tail -2
    python3 bench/bench_trainers.py classify-figures "$OUT/ner-$name" | tee -a "$OUT/finetune_trainer.jsonl"
  done
}
model_bench() {  # the synthetic model benchmarks of 11-26 (torch.compile of our BERT-base step takes longest)
  local T
  [ "${SMOKE:-0}" = 1 ] && return 0
  T=$(cap 330 bench_bert_model) || return 0
  timeout "$T" python3 bench/bench_bert_model.py --device cuda --configs small,base --batch 64 --repeats 20 \
      --compile-configs base --json "$OUT/bert_gpu.json" 2>&1 | tee "$OUT/bert_gpu.txt"
}

key() {  # every goal figure of the issue, in order of importance: what a spent budget skips comes last
  ours_bert $BASE 128 20 $B128; ours_bert $LARGE 512 80 $B512; ours_detr; hf_detr
  hf_bert $BASE 128 $B128; hf_bert $LARGE 512 $B512
  ours_bert $BASE 128 20 $B128 reduce-overhead  # CUDA graphs: what the launches cost the default mode
}
pipelines() {  # the Python pipelines on the GPU against transformers' (results compared first): last, least
  local T
  [ "${SMOKE:-0}" = 1 ] && return 0  # (their CPU runs: bench_pipelines.py, bench_detr_pipeline.py, bench_detr_predict.py)
  T=$(cap 120 "pipelines bert") || return 0
  timeout "$T" python3 bench/bench_pipelines.py --device cuda --config base --texts 400 --batch-size 32 --repeats 3 \
      2>&1 | grep '^{' | tee "$OUT/pipelines_gpu.jsonl"
  T=$(cap 90 "pipelines detr") || return 0
  timeout "$T" python3 bench/bench_detr_pipeline.py --device cuda --preset r50 --images 20 --repeats 3 \
      2>&1 | grep '^{' | tee -a "$OUT/pipelines_gpu.jsonl"
  # detr predict on a folder of 1600x1200 photos: batches of 8, 4 decoding workers, against transformers' pipeline
  T=$(cap 120 "detr predict") || return 0
  timeout "$T" python3 bench/bench_detr_predict.py --device cuda --preset r50 --images 64 --batch-size 8 \
      --num-workers 4 --repeats 2 2>&1 | grep '^{' | tee -a "$OUT/pipelines_gpu.jsonl"
  T=$(cap 120 "detr predict bf16") || return 0  # (both sides in bf16: ours autocast, transformers' weights cast)
  timeout "$T" python3 bench/bench_detr_predict.py --device cuda --preset r50 --images 64 --batch-size 8 \
      --num-workers 4 --repeats 2 --dtype bfloat16 2>&1 | grep '^{' | tee -a "$OUT/pipelines_gpu.jsonl"
}
rest() { ours_detr compiled; detr_model_step; finetune; ner; model_bench; pipelines; }
case "$PART" in
  key) key ;;
  rest) rest ;;
  all) key; rest ;;
  bert) ours_bert $BASE 128 20 $B128; hf_bert $BASE 128 $B128; ours_bert $LARGE 512 80 $B512; hf_bert $LARGE 512 $B512 ;;
  detr) ours_detr; hf_detr; ours_detr compiled; detr_model_step ;;
  finetune) finetune ;;
  ner) ner ;;
  model) model_bench ;;
esac
echo "== figures ($PART, ${SECONDS}s of ${BUDGET}s) =="  # last: a device call's reply carries the output's end
cat "$OUT"/*_trainer.jsonl "$OUT/skipped.txt" 2>/dev/null
python3 bench/bench_trainers.py table "$OUT" | tee "$OUT/table.md"  # for BENCHMARKS.md: ratios and goals
if [ -n "${PACK:-}" ]; then  # what comes back from a device: figures, logs, scalars, profiles; no data, checkpoints or weights
  tar czf "$PACK" -C "$OUT" --exclude=./data --exclude='*.pt' --exclude='*.safetensors' --exclude='*.tf_record' \
      --exclude='*.tfrecord' --exclude='events.out.*' --exclude=vocab.txt --exclude='*.json.gz' . && ls -la "$PACK"
  # the profiles' traces apart (a file over a device call's 16 MiB would not come back; the figures must)
  (cd "$OUT" && find . -path ./data -prune -o -name '*.json.gz' -print | tar czf "${PACK%.tgz}-traces.tgz" -T -) \
      && ls -la "${PACK%.tgz}-traces.tgz"
fi
