"""``bertdetr bert make-data`` on Chinese text: whole-word masking with ``--word-segmenter jieba``
against the same run without a segmenter (single characters) and without whole-word masking,
side by side.

Each variant runs as its own process (``python -m bertdetr.cli bert make-data``) on the same corpus
with the same flags, alternating, ``--repeats`` times; we report the best CPU seconds (user +
system, steadier than wall time on a shared machine) and wall seconds of each, and the ratio
(jieba / plain in speed). Also ``jieba.lcut`` and ``rjieba.cut`` (the Rust port make-data uses
when installed) alone over the lines, for scale: the
segmentation runs once per line (the documents are segmented as they are read, in the shard's
worker), not once per ``dupe_factor`` pass.

Text: ``--text FILE`` (one sentence a line, blank lines between documents), or generated: the
clauses of ``tests/data/bert/zh/corpus_zh.txt`` (split at Chinese commas and semicolons) drawn
at random into new sentences and documents, so that lines rarely repeat (repeated lines would
flatter the tokenizer's chunk cache, not jieba). The vocabulary is built from the text with
``build-vocab``.

    python bench/bench_make_data_chinese.py --mb 4
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(ROOT, "tests", "data", "bert", "zh", "corpus_zh.txt")


def generated_text(megabytes: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    with open(CORPUS, encoding="utf-8") as f:
        sentences = [s.strip() for s in f if s.strip()]
    clauses = [c for s in sentences for c in re.split(r"[，；。！？]", s) if c]
    out, size = [], 0
    while size < megabytes * 1e6:
        document = []
        for _ in range(rng.randint(3, 12)):
            sentence = "，".join(rng.choice(clauses) for _ in range(rng.randint(1, 4))) + "。"
            document.append(sentence)
            size += len(sentence.encode())
        out.append("\n".join(document))
    return "\n\n".join(out) + "\n"


def run(args: list[str]) -> tuple[float, float]:
    """(CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bertdetr.cli", *args], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", help="a Chinese corpus (default: generated)")
    parser.add_argument("--mb", type=float, default=4.0, help="megabytes of generated text")
    parser.add_argument("--dupe-factor", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        text = args.text
        if text is None:
            text = os.path.join(tmp, "zh.txt")
            with open(text, "w", encoding="utf-8") as f:
                f.write(generated_text(args.mb))
        vocab = os.path.join(tmp, "vocab.txt")
        run(["bert", "build-vocab", "--input-file", text, "--output", vocab, "--vocab-size", "21128"])
        with open(text, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        megabytes = os.path.getsize(text) / 1e6

        common = ["bert", "make-data", "--input-file", text, "--vocab-file", vocab, "--no-progress",
                  "--dupe-factor", str(args.dupe_factor)]
        variants = {"no-wwm": [], "plain": ["--do-whole-word-mask"],
                    "jieba": ["--do-whole-word-mask", "--word-segmenter", "jieba"]}
        best = {name: (float("inf"), float("inf")) for name in variants}
        for _ in range(args.repeats):
            for name, extra in variants.items():
                cpu, wall = run([*common, "--output-file", os.path.join(tmp, f"{name}.tfrecord"), *extra])
                best[name] = (min(best[name][0], cpu), min(best[name][1], wall))

        import jieba
        import logging
        import rjieba

        jieba.setLogLevel(logging.WARNING)
        alone = {}
        for name, cut in {"jieba.lcut": jieba.lcut, "rjieba.cut": rjieba.cut}.items():
            cut("预热")  # the dictionary is built (or read from its cache) once
            t = time.process_time()
            for line in lines:
                cut(line)
            alone[name] = time.process_time() - t

    print(f"text: {megabytes:.1f} MB, {len(lines)} lines; dupe_factor {args.dupe_factor}; best of {args.repeats}")
    for name, (cpu, wall) in best.items():
        flags = " ".join(variants[name]) or "(no whole-word masking)"
        print(f"  make-data {flags:52s} CPU {cpu:6.2f} s  wall {wall:6.2f} s  {megabytes / cpu:5.2f} MB/CPU-s")
    for name, cpu in alone.items():
        print(f"  {name} alone over the lines: CPU {cpu:.2f} s ({megabytes / cpu:.2f} MB/s)")
    for other in ("plain", "no-wwm"):
        print(f"speed with jieba / {' '.join(variants[other]) or 'no whole-word masking'}: "
              f"{best[other][0] / best['jieba'][0]:.2f}x (CPU), {best[other][1] / best['jieba'][1]:.2f}x (wall)")


if __name__ == "__main__":
    main()
