"""SQuAD feature conversion, side by side with Google's ``run_squad.py`` (bert-tensorflow 1.0.4).

Both run as separate processes, one after the other, on the same SQuAD-format file with the same
settings (Google's defaults: max_seq_length 384, doc_stride 128, max_query_length 64, the
bert-base-uncased vocab), timing each stage of what ``run_squad.py``'s ``main`` does before
training: ``read_squad_examples``, ``convert_examples_to_features`` and writing the TFRecord
(Google's ``FeatureWriter``, ours ``write_features``), wall and CPU seconds. The features are
checked equal (a digest of every field of every feature).

Google's code comes from the Python given with ``--google-python`` (an environment with
tensorflow and bert-tensorflow 1.0.4), e.g. ``/work/venvs/tf/bin/python``.

Text: SQuAD-shaped questions on real prose: the bundled public-domain books
(``src/bertdetr/data/pd_books.txt``) cut into paragraphs of about SQuAD's size (~120 words, 5
questions each), each question made of words of one of its sentences, its answer a span of 1-4
words of the paragraph at its character offset (``--paragraphs`` of them; the books give ~800).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")
BOOKS = os.path.join(ROOT, "src", "bertdetr", "data", "pd_books.txt")


def make_squad(path: str, paragraphs: int, seed: int = 0) -> int:
    """Writes a SQuAD 1.1 training-format file; returns the number of questions."""
    rng = random.Random(seed)
    with open(BOOKS, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if len(line.split()) >= 6]
    data, n = [], 0
    i = 0
    while len(data) < paragraphs and i < len(sentences):
        chunk = []
        while i < len(sentences) and sum(len(s.split()) for s in chunk) < 120:
            chunk.append(sentences[i])
            i += 1
        context = " ".join(chunk)
        words = [(m.start(), m.group()) for m in __import__("re").finditer(r"\S+", context)]
        qas = []
        for q in range(5):
            sentence = rng.choice(chunk).split()
            question = " ".join(["What"] + sentence[rng.randrange(len(sentence) // 2):][:12]) + "?"
            k = rng.randrange(len(words))
            span = words[k:k + rng.randint(1, 4)]
            text = context[span[0][0]:span[-1][0] + len(span[-1][1])]
            qas.append({"id": f"p{len(data)}-q{q}", "question": question,
                        "answers": [{"text": text, "answer_start": span[0][0]}]})
            n += 1
        data.append({"title": f"p{len(data)}", "paragraphs": [{"context": context, "qas": qas}]})
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": "1.1", "data": data}, f)
    return n


# Each side runs as `python -c DRIVER <side> <squad.json> <vocab> <is_training> <out.tf_record>` and
# prints one JSON line: stage timings and a digest of the features.
DRIVER = r'''
import hashlib, json, os, resource, sys, time
side, path, vocab, is_training, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

if side == "google":
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import types
    import tensorflow.compat.v1 as tf
    sys.modules.setdefault("tensorflow.contrib", types.ModuleType("tensorflow.contrib")).layers = None
    from bert import run_squad, tokenization
    tf.logging.set_verbosity(tf.logging.ERROR)
    tf.flags.FLAGS([sys.argv[0]])
    tokenizer = tokenization.FullTokenizer(vocab_file=vocab, do_lower_case=True)
    def read(): return run_squad.read_squad_examples(path, is_training)
    def convert(examples):
        features = []
        run_squad.convert_examples_to_features(examples, tokenizer, 384, 128, 64, is_training, features.append)
        return features
    def write(features):
        writer = run_squad.FeatureWriter(out, is_training)
        for f in features:
            writer.process_feature(f)
        writer.close()
else:
    import warnings
    from bertdetr.bert.finetuning import squad_data as squad
    from bertdetr.bert.data.tokenization import FullTokenizer
    tokenizer = FullTokenizer(vocab, do_lower_case=True)
    def read():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return squad.read_squad_examples(path, is_training)
    def convert(examples):
        return list(squad.convert_examples_to_features(examples, tokenizer, 384, 128, 64, is_training))
    def write(features):
        squad.write_features(features, out, is_training)

times = {}
for stage, fn in (("read", read), ("convert", convert), ("write", write)):
    arg = () if stage == "read" else (result,)
    w, c = time.perf_counter(), cpu()
    result_new = fn(*arg)
    times[stage] = (time.perf_counter() - w, cpu() - c)
    if stage == "read":
        examples = result = result_new
    elif stage == "convert":
        features = result = result_new
digest = hashlib.sha256()
for f in features:
    digest.update(json.dumps([f.unique_id, f.example_index, f.doc_span_index, f.tokens,
                              sorted(f.token_to_orig_map.items()), sorted(f.token_is_max_context.items()),
                              f.input_ids, f.input_mask, f.segment_ids, f.start_position, f.end_position,
                              bool(f.is_impossible)]).encode())
print(json.dumps({"times": times, "examples": len(examples), "features": len(features),
                  "digest": digest.hexdigest()}))
'''


def run_side(python: str, side: str, path: str, is_training: bool, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    proc = subprocess.run([python, "-c", DRIVER, side, path, VOCAB, "1" if is_training else "0", out],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--google-python", required=True, help="a Python with tensorflow and bert-tensorflow 1.0.4")
    parser.add_argument("--paragraphs", type=int, default=400)
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "squad.json")
        questions = make_squad(path, args.paragraphs)
        print(f"{args.paragraphs} paragraphs, {questions} questions; load: {os.getloadavg()[0]:.2f}")
        for is_training in (True, False):
            mode = "train" if is_training else "predict"
            google = run_side(args.google_python, "google", path, is_training, os.path.join(tmp, "g.tf_record"))
            ours = run_side(sys.executable, "ours", path, is_training, os.path.join(tmp, "o.tf_record"))
            assert google["digest"] == ours["digest"], "features differ"
            results[mode] = {"google": google, "ours": ours}
            print(f"{mode}: {ours['examples']} examples, {ours['features']} features, equal to Google's")
            for stage in ("read", "convert", "write"):
                (gw, gc), (ow, oc) = google["times"][stage], ours["times"][stage]
                print(f"  {stage:8s} Google {gw:7.2f} s wall {gc:7.2f} s CPU | ours {ow:6.2f} s wall {oc:6.2f} s CPU"
                      f" | x{gw / ow:5.1f} wall x{gc / oc:5.1f} CPU")
            g_total = sum(t[1] for t in google["times"].values())
            o_total = sum(t[1] for t in ours["times"].values())
            print(f"  all three: x{g_total / o_total:.1f} CPU")
        print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
