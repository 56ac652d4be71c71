"""The pretraining input pipeline, side by side with Google's ``input_fn_builder`` on tf.data, per core.

    python bench/bench_input_pipeline.py --tf-python /tmp/tfenv/bin/python [--max-seq-length 128] [--repeat 3]

Records: ``bertdetr bert make-data`` on real English prose (the CPython documentation sources of
Debian's ``python3.11-doc``, as ``bench_make_data.py`` builds it; or ``--text``), bert-base-uncased
vocab, Google's flags (dupe_factor 5, masked_lm_prob 0.15, max_predictions_per_seq 20 at length
128, 80 at 512).

Each side runs in its own process, one core, and times ``--batches`` batches of ``--batch-size``
after a warm-up batch, alternating sides ``--repeat`` times:

- ours: ``bert pretrain``'s pipeline as its trainer builds it: ``PretrainingStream`` (files read
  with their CRCs checked, a 1000-record shuffle buffer, the batch's records decoded together,
  every value checked against the model's config) in a ``DataLoader(batch_size=None,
  num_workers=0)``, torch on one thread;
- tf: Google's ``run_pretraining.input_fn_builder`` for training, its TF1 ``tf.contrib.data``
  calls in their TF2 spelling (``parallel_interleave(sloppy=True)`` -> ``interleave(deterministic=
  False)``, ``map_and_batch`` -> ``map`` + ``batch(drop_remainder=True)``), ``num_cpu_threads=1`` and
  TensorFlow's intra- and inter-op pools of one thread: ``parse_single_example`` in C++ per record,
  the int64 -> int32 casts of its ``_decode_record``.

Reported: records per second by wall time and per CPU second (the process's user + system time
over the timed batches), medians over the repeats, and ours over tf.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")

OURS = r"""
import json, os, sys, time
import torch
torch.set_num_threads(1)
from bertdetr.bert.model import BertConfig
from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records
files, batch_size, batches = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
shape = inspect_records(files)
stream = PretrainingStream(files, batch_size, 12345, shape, model_config=BertConfig())
loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=0,
                                     generator=torch.Generator().manual_seed(0))
it = iter(loader)
next(it)
t, c = time.perf_counter(), time.process_time()
for _ in range(batches):
    batch = next(it)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c}))
"""

TF = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
files, batch_size, batches = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
T, P = int(sys.argv[4]), int(sys.argv[5])
num_cpu_threads = 1
name_to_features = {
    "input_ids": tf.io.FixedLenFeature([T], tf.int64),
    "input_mask": tf.io.FixedLenFeature([T], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([T], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([P], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([P], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([P], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}

def _decode_record(record):
    example = tf.io.parse_single_example(record, name_to_features)
    for name in list(example.keys()):
        t = example[name]
        if t.dtype == tf.int64:
            t = tf.cast(t, tf.int32)  # tf.Example only supports int64; TPUs int32 (Google's comment)
        example[name] = t
    return example

d = tf.data.Dataset.from_tensor_slices(tf.constant(files))
d = d.repeat()
d = d.shuffle(buffer_size=len(files))
d = d.interleave(tf.data.TFRecordDataset, cycle_length=min(num_cpu_threads, len(files)), deterministic=False)
d = d.shuffle(buffer_size=100)
d = d.map(_decode_record, num_parallel_calls=num_cpu_threads).batch(batch_size, drop_remainder=True)
it = iter(d)
next(it)
t, c = time.perf_counter(), time.process_time()
for _ in range(batches):
    batch = next(it)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c}))
"""


def make_records(folder: str, text: str | None, mb: float, max_seq_length: int) -> tuple[str, int]:
    sys.path.insert(0, HERE)
    from bench_make_data import build_corpus

    if text is None:
        text = build_corpus(os.path.join(folder, "corpus.txt"), mb)
    out = os.path.join(folder, f"train-{max_seq_length}.tfrecord")
    predictions = 20 if max_seq_length <= 128 else 80
    subprocess.run([sys.executable, "-m", "bertdetr.cli", "bert", "make-data", "--input-file", text,
                    "--output-file", out, "--vocab-file", VOCAB, "--max-seq-length", str(max_seq_length),
                    "--max-predictions-per-seq", str(predictions), "--dupe-factor", "5", "--no-progress"],
                   check=True, stdout=subprocess.DEVNULL)
    return out, predictions


def run(python: str, code: str, args: list[str], src: str = os.path.join(ROOT, "src")) -> dict:
    """``code`` run by ``python`` on one thread with ``src`` importable; its last output line, as JSON."""
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run([python, "-c", code, *args], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tf-python", required=True, help="a Python with tensorflow (e.g. /tmp/tfenv/bin/python)")
    p.add_argument("--text", help="input text (default: built from the CPython docs)")
    p.add_argument("--mb", type=float, default=2.6, help="megabytes of text to build (default 2.6)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, predictions = make_records(tmp, args.text, args.mb, args.max_seq_length)
        common = [json.dumps([path]), str(args.batch_size), str(args.batches)]
        n = args.batch_size * args.batches
        results: dict[str, list] = {"ours": [], "tf": []}
        for _ in range(args.repeat):
            results["ours"].append(run(sys.executable, OURS, common))
            results["tf"].append(run(args.tf_python, TF, common + [str(args.max_seq_length), str(predictions)]))
    row = {"max_seq_length": args.max_seq_length, "batch_size": args.batch_size, "records": n,
           "load_average": os.getloadavg()[0]}
    for side, runs in results.items():
        row[f"{side}_records_per_s"] = round(n / statistics.median(r["wall"] for r in runs))
        row[f"{side}_records_per_cpu_s"] = round(n / statistics.median(r["cpu"] for r in runs))
    row["ours_over_tf_wall"] = round(row["ours_records_per_s"] / row["tf_records_per_s"], 2)
    row["ours_over_tf_cpu"] = round(row["ours_records_per_cpu_s"] / row["tf_records_per_cpu_s"], 2)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
