"""``bert ner --crf`` against CLUENER2020's own BERT+CRF trainer (``run_ner_crf.py``), end to end.

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch six boto3 requests tqdm regex sentencepiece sacremoses
    python bench/bench_ner_crf_trainer.py --cluener /tmp/CLUENER2020 --python /tmp/ref/bin/python [--copies 20]

The same task on both sides: the bundled CLUENER-layout data (``tests/data/bert/zh/cluener``, its
training file copied ``--copies`` times), the bundled Chinese vocabulary, the same BERT (L4 H256 from
one set of random weights, saved as a transformers directory with ``pytorch_model.bin``, which both
read), CLUENER's settings from its ``run_ner_crf.sh``: batches of 24 cut to their longest row,
max length 128, lr 3e-5 for BERT and 1e-3 for the CRF and the classifier, 10% warmup, gradients
clipped to 1.0, fp32 on the CPU, the same threads (``--threads``, default 2: CLUENER's takes
torch's default, a thread per core). Each side runs as users run it, a process each, both under the
``--python`` given (the same torch): CLUENER's ``run_ner_crf.py --do_train`` and ``bertdetr bert ner
--crf --do-train``. The time of one epoch is the wall time of a 2-epoch run less that of a 1-epoch
run (start-up, reading and features, saving cancel; CLUENER's feature cache is removed before
each run), the sides alternating, ``--repeats`` times; medians. Ours is run from this checkout
(``PYTHONPATH=src``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "tests", "data", "bert", "zh")


def make_model(folder: str) -> None:
    """A random L4 H256 BERT over the bundled Chinese vocabulary as a transformers directory with
    ``pytorch_model.bin`` (CLUENER's copy of transformers reads no safetensors)."""
    import torch

    from bertdetr.bert.model import BertConfig, build_bert_model
    from bertdetr.bert.weights import to_hf_state_dict

    with open(os.path.join(DATA, "vocab_zh.txt"), encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    config = BertConfig(vocab_size=vocab_size, num_hidden_layers=4, hidden_size=256, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=512)
    torch.manual_seed(0)
    model = build_bert_model(config)
    state = {"bert." + k: v.contiguous() for k, v in to_hf_state_dict(model.state_dict(), config).items()}
    os.makedirs(folder)
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config.to_hf_dict("BertModel"), f)
    shutil.copy(os.path.join(DATA, "vocab_zh.txt"), os.path.join(folder, "vocab.txt"))


CLUENER_TYPES = {"address", "book", "company", "game", "government", "movie", "name", "organization", "position",
                 "scene"}


def make_data(folder: str, copies: int) -> int:
    """The bundled files, train.json copied ``copies`` times; a type CLUENER's fixed label list lacks
    (the bundled "product") becomes "book" (its trainer knows CLUENER's ten types only)."""
    os.makedirs(folder)
    for name, times in (("train.json", copies), ("dev.json", 1), ("test.json", 1)):
        with open(os.path.join(DATA, "cluener", name), encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
        for line in lines:
            if "label" in line:
                line["label"] = {(t if t in CLUENER_TYPES else "book"): v for t, v in line["label"].items()}
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines * times)
    with open(os.path.join(folder, "train.json"), encoding="utf-8") as f:
        return sum(1 for _ in f)


def run_clueners(args, model: str, data: str, out: str, epochs: int) -> float:
    for cached in glob.glob(os.path.join(data, "cached_crf-*")):
        os.remove(cached)
    cmd = [args.python, "run_ner_crf.py", "--model_type", "bert", "--model_name_or_path", model, "--task_name",
           "cluener", "--do_train", "--do_lower_case", "--data_dir", data, "--train_max_seq_length", "128",
           "--per_gpu_train_batch_size", "24", "--learning_rate", "3e-5", "--crf_learning_rate", "1e-3",
           "--num_train_epochs", str(epochs), "--logging_steps", "-1", "--save_steps", "-1", "--output_dir", out,
           "--overwrite_output_dir", "--seed", "42", "--no_cuda"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=os.path.join(args.cluener, "pytorch_version"), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run_ours(args, model: str, data: str, out: str, epochs: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    code = ("import sys; from bertdetr.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = [args.python, "-c", code, "bert", "ner", "--data-dir", data, "--output-dir", out, "--init-checkpoint", model,
           "--max-seq-length", "128", "--train-batch-size", "24", "--learning-rate", "3e-5", "--crf",
           "--crf-learning-rate", "1e-3", "--num-train-epochs", str(epochs), "--do-train", "--no-progress",
           "--save-checkpoints-steps", "1000000", "--device", "cpu", "--num-threads", str(args.threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cluener", required=True, help="a clone of CLUEbenchmark/CLUENER2020")
    p.add_argument("--python", default=sys.executable, help="the interpreter both sides run under (with CLUENER's imports)")
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2,
                   help="ours: --num-threads (CLUENER's takes torch's default, a thread per core; ours would "
                        "otherwise take fewer while the load average still counts the run before it)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench_ner_crf_")
    try:
        model, data = os.path.join(work, "model"), os.path.join(work, "data")
        make_model(model)
        sentences = make_data(data, args.copies)
        epoch = {"CLUENER run_ner_crf.py": [], "bert ner --crf": []}
        whole = {name: [] for name in epoch}
        for _ in range(args.repeats):
            for name, run in (("CLUENER run_ner_crf.py", run_clueners), ("bert ner --crf", run_ours)):
                out = os.path.join(work, "out")
                one = run(args, model, data, out, 1)
                two = run(args, model, data, out, 2)
                epoch[name].append(two - one)
                whole[name].append(two)
                print(f"{name}: 1 epoch run {one:.1f} s, 2 epochs {two:.1f} s", flush=True)
        print(f"{sentences} training sentences, batches of 24, L4 H256; one epoch (median of {args.repeats}):")
        ref = statistics.median(epoch["CLUENER run_ner_crf.py"])
        ref_whole = statistics.median(whole["CLUENER run_ner_crf.py"])
        for name, times in epoch.items():
            t, w = statistics.median(times), statistics.median(whole[name])
            print(f"  {name:<24} {t:7.1f} s  {sentences / t:7.1f} sentences/s  {ref / t:.2f}x;  "
                  f"the 2-epoch run {w:.1f} s wall, {ref_whole / w:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
