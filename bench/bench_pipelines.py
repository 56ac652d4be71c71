"""The pipelines from Python, ours against transformers' on the same folder and texts (CPU).

    python bench/bench_pipelines.py [--config small|base] [--texts 200] [--threads 1] [--repeats 3] [--batch-size 1]
        [--device cuda]

One BERT of ``--config`` (bench_classify's ``small``: L4 H256; ``base``) with random weights is
saved by transformers with each task's head (fill-mask; text-classification, 2 labels;
token-classification, BIO tags of 3 types); each pipeline (``bertdetr.bert.pipeline`` and
``transformers.pipeline``, batch size 1 on both sides as users call them by default, or
``--batch-size`` on both: the list of texts in one call, transformers padding each batch of
consecutive texts, ours batching texts of like length) then reads the
same ``--texts`` sentences: English from the bundled books, Chinese from the test corpus (a
[MASK] put in each for fill-mask; token classification with ``aggregation_strategy="simple"``).
Each side's results are compared (equal labels and tokens, scores within 1e-4) before any time
counts; times are the best of ``--repeats`` passes over all texts, alternating sides. Question
answering is left out: transformers 5 has no such pipeline (ours is checked against transformers
4's goldens in tests/bert/pipelines).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")
SHAPES = {"small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
          "base": {}}
NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def texts(n: int) -> list[str]:
    """n sentences, alternately English (the books) and Chinese (the test corpus), 20-300 characters."""
    books = open(os.path.join(ROOT, "src", "bertdetr", "data", "pd_books.txt"), encoding="utf-8").read().split("\n")
    zh = open(os.path.join(ROOT, "tests", "data", "bert", "zh", "corpus_zh.txt"), encoding="utf-8").read().split("\n")
    en = [t.strip() for t in books if 20 <= len(t.strip()) <= 300]
    zh = [t.strip() for t in zh if 10 <= len(t.strip()) <= 300]
    return [(en if k % 2 == 0 else zh)[k // 2 % len(en if k % 2 == 0 else zh)] for k in range(n)]


def with_mask(text: str) -> str:
    words = text.split(" ")
    if len(words) > 2:
        words[len(words) // 2] = "[MASK]"
        return " ".join(words)
    return text[:len(text) // 2] + "[MASK]" + text[len(text) // 2 + 1:]


def make_folders(tmp: str, config: str) -> dict[str, str]:
    torch.manual_seed(0)
    cfg = dict(vocab_size=30522, **SHAPES[config])
    made = {}
    for task, cls, extra in (
            ("fill-mask", transformers.BertForMaskedLM, {}),
            ("text-classification", transformers.BertForSequenceClassification,
             {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}),
            ("token-classification", transformers.BertForTokenClassification,
             {"id2label": dict(enumerate(NER)), "label2id": {t: i for i, t in enumerate(NER)}})):
        model = cls(transformers.BertConfig(**cfg, **extra)).eval()
        if task == "token-classification":  # a head that tags: labels vary along a sentence
            with torch.no_grad():
                model.classifier.weight.mul_(20.0)
        folder = os.path.join(tmp, task)
        model.save_pretrained(folder)
        transformers.BertTokenizer(VOCAB, model_max_length=512).save_pretrained(folder)
        made[task] = folder
    return made


def best_seconds(sides: dict, run, repeats: int, device: str) -> dict[str, float]:
    """Each side's best time of ``run(side)`` over ``repeats`` rounds, sides alternating (the GPU
    synchronised around each)."""
    best = {}
    for _ in range(repeats):
        for name, side in sides.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            run(side)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
    return best


def same(a, b) -> bool:
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - float(b)) <= 1e-4 * abs(a) + 1e-6
    return a == b


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(SHAPES), default="small")
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bertdetr.bert import pipeline

    sentences = texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        folders = make_folders(tmp, args.config)
        for task, inputs, kwargs in (("fill-mask", [with_mask(t) for t in sentences], {}),
                                     ("text-classification", sentences, {}),
                                     ("token-classification", sentences, {"aggregation_strategy": "simple"})):
            sides = {"bertdetr": pipeline(task, folders[task], device=args.device),
                     "transformers": transformers.pipeline(task, model=folders[task], device=args.device)}

            def run(p):
                if args.batch_size == 1:
                    return [p(x, **kwargs) for x in inputs]
                return p(inputs, batch_size=args.batch_size, **kwargs)

            out = {name: run(p) for name, p in sides.items()}
            agree = sum(same(a, b) for a, b in zip(out["bertdetr"], out["transformers"]))
            best = best_seconds(sides, run, args.repeats, args.device)
            row = {"task": task, "config": args.config, "texts": len(inputs), "threads": args.threads,
                   "device": args.device,
                   "batch_size": args.batch_size,
                   "agree": f"{agree}/{len(inputs)}",
                   "bertdetr_texts_per_s": round(len(inputs) / best["bertdetr"], 1),
                   "transformers_texts_per_s": round(len(inputs) / best["transformers"], 1),
                   "ratio": round(best["transformers"] / best["bertdetr"], 2)}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
