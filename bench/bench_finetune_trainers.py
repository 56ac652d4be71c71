"""Fine-tuning end to end as users run it: ``bertdetr bert classify`` against transformers' ``Trainer``.

    python -m venv --system-site-packages /work/venvs/hf && /work/venvs/hf/bin/pip install accelerate
    python bench/bench_finetune_trainers.py --hf-python /work/venvs/hf/bin/python [--config small] [--repeats 3]

The same task on both sides: the demo's book task (``demo.make_book_task``: 1000 training sentences
of four books, a sentence a line, four labels), tokenized with the bert-base-uncased vocabulary at
``max_seq_length`` 128, each batch padded to its longest row (ours: ``take_batch``'s cut;
transformers: ``DataCollatorWithPadding``), batch 32 with the last partial batch dropped (Google's
``drop_remainder``; ``dataloader_drop_last``), lr 5e-5 with 10% warmup then linear decay, weight
decay 0.01, gradients clipped to norm 1.0, dropout 0.1, the same BERT config from random weights
(``--config``: bench_classify's ``small``, L4 H256, or ``base``), fp32 on the CPU with the same
threads (``--bf16``: bf16 autocast on both sides). Ours: ``run_classifier`` (Google's AdamWeightDecay on flat buffers, its schedule, the
classifier computing the last layer at [CLS] only); transformers: ``BertForSequenceClassification``
(sdpa attention) under ``Trainer`` (its default AdamW). Timed: the training loop alone (ours:
``finetune.finetune``; transformers: ``trainer.train()``), features made beforehand on both sides.
Each side runs in its own process, alternating, ``--repeats`` times; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")
SHAPES = {"small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
          "base": {}}


def ours(args) -> dict:
    """``bert classify`` (``run_classifier``) of the task; the seconds of its training loop."""
    from bertdetr.bert.finetuning import finetune as finetune_module
    from bertdetr.bert.finetuning.classifier import ClassifierConfig, run_classifier

    real, seconds = finetune_module.finetune, []

    def timed(*a, **k):
        t = time.perf_counter()
        out = real(*a, **k)
        seconds.append(time.perf_counter() - t)
        return out

    finetune_module.finetune = timed
    with tempfile.TemporaryDirectory() as out:
        summary = run_classifier(ClassifierConfig(
            task_name="tsv", data_dir=args.data, output_dir=out, bert_config_file=args.bert_config, vocab_file=VOCAB,
            do_train=True, max_seq_length=128, train_batch_size=32, num_train_epochs=args.epochs, learning_rate=5e-5,
            seed=0, num_threads=args.threads, progress=False, log_every=10**6, save_checkpoints_steps=10**6,
            bf16=args.bf16))
    return {"side": "bertdetr bert classify", "steps": summary["step"], "seconds": seconds[0]}


def transformers_trainer(args) -> dict:
    """transformers' ``Trainer`` on the same task; the seconds of ``trainer.train()``."""
    import csv

    import torch
    import transformers

    sys.path.insert(0, os.path.join(ROOT, "src"))
    from bertdetr.bert.model import BertConfig

    torch.set_num_threads(args.threads)
    with open(os.path.join(args.data, "train.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    labels = sorted({r["label"] for r in rows})
    tokenizer = transformers.BertTokenizerFast(vocab_file=VOCAB, do_lower_case=True)
    encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=128)
    dataset = [{"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels.index(r["label"])}
               for ids, types, mask, r in zip(encoded["input_ids"], encoded["token_type_ids"],
                                              encoded["attention_mask"], rows)]
    config = BertConfig.from_json_file(args.bert_config)
    hf_config = transformers.BertConfig(**config.to_hf_dict("BertForSequenceClassification"), num_labels=len(labels),
                                        attn_implementation="sdpa")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(hf_config)
    with tempfile.TemporaryDirectory() as out:
        training = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=32, num_train_epochs=args.epochs, learning_rate=5e-5,
            warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", logging_steps=10**6,
            save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, dataloader_drop_last=True,
            seed=0, disable_tqdm=True, bf16=args.bf16)
        trainer = transformers.Trainer(model=model, args=training, train_dataset=dataset,
                                       data_collator=transformers.DataCollatorWithPadding(tokenizer))
        t = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t
    return {"side": f"transformers {transformers.__version__} Trainer", "steps": result.global_step, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf-python", default=sys.executable, help="a Python with transformers and accelerate")
    ap.add_argument("--config", choices=sorted(SHAPES), default="small")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides (weights fp32)")
    ap.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--bert-config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(ours(args) if args.side == "ours" else transformers_trainer(args)), flush=True)
        return

    from bertdetr.bert.model import BertConfig
    from bertdetr.demo import make_book_task

    with tempfile.TemporaryDirectory() as tmp:
        data, n_train, _ = make_book_task(os.path.join(tmp, "task"), seed=0)
        bert_config = os.path.join(tmp, "bert_config.json")
        with open(bert_config, "w", encoding="utf-8") as f:
            json.dump(BertConfig(vocab_size=30522, **SHAPES[args.config]).to_google_dict(), f)
        print(f"# {n_train} training sentences, {args.config} config, {args.epochs} epochs, {args.threads} threads"
              f"{', bf16 autocast' if args.bf16 else ''}; "
              f"load average {os.getloadavg()}", flush=True)
        runs: dict[str, list[dict]] = {"ours": [], "hf": []}
        for _ in range(args.repeats):
            for side, python in (("ours", sys.executable), ("hf", args.hf_python)):
                done = subprocess.run([python, os.path.abspath(__file__), "--side", side, "--data", data,
                                       "--bert-config", bert_config, "--epochs", str(args.epochs),
                                       "--threads", str(args.threads), *(["--bf16"] if args.bf16 else [])],
                                      capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                if done.returncode != 0:
                    raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["sequences_per_s"] = round(row["steps"] * 32 / row["seconds"], 1)
                runs[side].append(row)
                print(json.dumps(row), flush=True)
    rate = {side: statistics.median(r["sequences_per_s"] for r in rows) for side, rows in runs.items()}
    print(json.dumps({"config": args.config, "bf16": args.bf16, "ours_sequences_per_s": rate["ours"], "hf_sequences_per_s": rate["hf"],
                      "ratio": round(rate["ours"] / rate["hf"], 2), "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
