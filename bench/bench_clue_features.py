"""Multiple-choice features (C3, CHID) against CLUE's own baselines' code on the same files.

    git clone https://github.com/CLUEbenchmark/CLUE /tmp/CLUE
    python bench/bench_clue_features.py --clue /tmp/CLUE [--copies 1000] [--repeats 3]

The bundled C3 and CHID test files (``tests/data/bert/c3``, ``tests/data/bert/chid``, written in each
layout) copied ``--copies`` times into larger files (CHID's blanks renumbered), then read and made
into features by each side with the bundled Chinese vocabulary, in one process, the sides
alternating, best of ``--repeats``: CLUE's ``run_c3.py`` (``c3Processor``,
``convert_examples_to_features``, max_seq_length 512) and ``CHID_preprocess.py``
(``read_chid_examples``, ``convert_examples_to_features``, 64), with the ``BertTokenizer`` of its
``tools/official_tokenization.py``; ours ``bert multiple-choice``'s readers and features
(``read_c3`` + ``examples_to_tensors``; ``read_chid_examples`` + ``convert_examples_to_features``),
with our ``FullTokenizer``. Every 50th question's features are checked equal. CLUE's C3 reader
pickles its examples as it reads (its first run, timed as it is; the pickles are removed before each
round); its printing goes nowhere.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import re
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "tests", "data", "bert")
VOCAB = os.path.join(DATA, "zh", "vocab_zh.txt")


def write_c3(folder: str, copies: int) -> None:
    for kind in ("d", "m"):
        with open(os.path.join(DATA, "c3", f"c3-{kind}-train.json"), encoding="utf-8") as f:
            docs = json.load(f)
        with open(os.path.join(folder, f"c3-{kind}-train.json"), "w", encoding="utf-8") as f:
            json.dump(docs * copies, f, ensure_ascii=False)
        for split in ("dev", "test"):  # CLUE's processor reads all three splits
            with open(os.path.join(folder, f"c3-{kind}-{split}.json"), "w", encoding="utf-8") as f:
                json.dump(docs[:1], f, ensure_ascii=False)


def write_chid(folder: str, copies: int) -> None:
    with open(os.path.join(DATA, "chid", "train.json"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()]
    with open(os.path.join(DATA, "chid", "train_answer.json"), encoding="utf-8") as f:
        answers = json.load(f)
    out, new_answers = [], {}
    for _ in range(copies):
        for line in lines:
            content = []
            for passage in line["content"]:
                def renumber(m):
                    tag = f"#idiom{len(new_answers):06d}#"
                    new_answers[tag] = answers[m.group(0)]
                    return tag
                content.append(re.sub(r"#idiom\d{6}#", renumber, passage))
            out.append(json.dumps({**line, "content": content}, ensure_ascii=False))
    with open(os.path.join(folder, "train.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    with open(os.path.join(folder, "train_answer.json"), "w", encoding="utf-8") as f:
        json.dump(new_answers, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clue", required=True, help="a clone of CLUEbenchmark/CLUE")
    p.add_argument("--copies", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    sys.modules.setdefault("tools.utils", types.ModuleType("tools.utils"))  # TF helpers run_c3 imports, unused
    sys.path.insert(0, os.path.join(args.clue, "baselines", "models_pytorch", "mrc_pytorch"))
    import run_c3  # noqa: E402

    logging.getLogger("run_c3").setLevel(logging.WARNING)  # its first five examples, printed
    from preprocess import CHID_preprocess  # noqa: E402
    from tools import official_tokenization  # noqa: E402

    from bertdetr.bert.data.tokenization import FullTokenizer
    from bertdetr.bert.finetuning import chid_data
    from bertdetr.bert.finetuning.multiple_choice_data import c3_files, examples_to_tensors, read_c3

    clue_tok = official_tokenization.BertTokenizer(vocab_file=VOCAB, do_lower_case=True)
    ours_tok = FullTokenizer(VOCAB, do_lower_case=True)
    with tempfile.TemporaryDirectory() as tmp:
        c3_dir, chid_dir = os.path.join(tmp, "c3"), os.path.join(tmp, "chid")
        os.makedirs(c3_dir), os.makedirs(chid_dir)
        write_c3(c3_dir, args.copies)
        write_chid(chid_dir, args.copies)
        quiet = contextlib.redirect_stdout(io.StringIO())

        def clue_c3():
            for name in os.listdir(c3_dir):
                if name.endswith(".pkl"):
                    os.remove(os.path.join(c3_dir, name))
            shuffle, random.shuffle = random.shuffle, lambda x: None  # the files' order, as ours
            with quiet, contextlib.redirect_stderr(io.StringIO()):
                processor = run_c3.c3Processor(c3_dir)
                random.shuffle = shuffle
                return run_c3.convert_examples_to_features(processor.get_train_examples(), processor.get_labels(),
                                                           512, clue_tok)

        def ours_c3():
            return examples_to_tensors(read_c3(c3_files(c3_dir, "train"), "train"), 512, ours_tok)

        def clue_chid():
            with quiet, contextlib.redirect_stderr(io.StringIO()):
                examples = CHID_preprocess.read_chid_examples(os.path.join(chid_dir, "train.json"),
                                                              os.path.join(chid_dir, "train_answer.json"))
                return CHID_preprocess.convert_examples_to_features(examples, clue_tok, 64, 10)

        def ours_chid():
            return chid_data.convert_examples_to_features(
                chid_data.read_chid_examples(*chid_data.chid_files(chid_dir, "train")), ours_tok, 64, 10)

        rows = []
        for task, clue, ours in (("C3", clue_c3, ours_c3), ("CHID", clue_chid, ours_chid)):
            best = {"clue": float("inf"), "ours": float("inf")}
            for _ in range(args.repeats):
                for side, run in (("clue", clue), ("ours", ours)):
                    t = time.perf_counter()
                    out = run()
                    best[side] = min(best[side], time.perf_counter() - t)
                    if side == "clue":
                        theirs = out
                    else:
                        mine = out
            n = len(mine["label_ids"])
            for q in range(0, n, max(1, n // 50)):  # every 50th question's features, all rows
                rows_q = theirs[q] if task == "C3" else theirs[q].input_ids
                ids = [r.input_ids for r in rows_q] if task == "C3" else rows_q
                assert mine["input_ids"][q].tolist() == ids, (task, q)
            rows.append((task, n, best["clue"], best["ours"]))
    print(f"{args.copies} copies of the bundled files, best of {args.repeats}; features equal")
    print("| task | questions | CLUE's code | ours | ratio |\n|---|---|---|---|---|")
    for task, n, clue_s, ours_s in rows:
        print(f"| {task} | {n} | {clue_s:.2f} s ({n / clue_s:.0f}/s) | {ours_s:.2f} s ({n / ours_s:.0f}/s) | "
              f"**{clue_s / ours_s:.1f}x** |")


if __name__ == "__main__":
    main()
