"""Golden examples and features made by CLUE's own C3 baseline from this folder's files (run once;
never needed by the tests):

    git clone https://github.com/CLUEbenchmark/CLUE /tmp/CLUE
    python tests/data/bert/c3/make_goldens.py /tmp/CLUE

Runs ``baselines/models_pytorch/mrc_pytorch/run_c3.py``'s ``c3Processor`` and
``convert_examples_to_features`` with the ``BertTokenizer`` of its ``tools/official_tokenization.py``
over ``../zh/vocab_zh.txt``, lowercasing, at max_seq_length 64 and 24 (short: exercises
``_truncate_seq_tuple``), and writes ``golden/<split>-<max_seq_length>.jsonl``: a line per
question with its choices' rows (guid, texts, label, input_ids, input_mask, segment_ids).

Two things are set around it: ``random.shuffle`` does nothing while the training set is read
(CLUE shuffles it with the global RNG; the goldens keep the files' order), and the processor's
pickle caches go to a temporary copy of the files. ``tools/utils.py`` (TensorFlow helpers,
nothing this uses) is replaced by an empty module, so no TensorFlow is needed.
"""

import json
import os
import random
import shutil
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "zh", "vocab_zh.txt")


def main(clue):
    sys.modules.setdefault("tools.utils", types.ModuleType("tools.utils"))
    sys.path.insert(0, os.path.join(clue, "baselines", "models_pytorch", "mrc_pytorch"))
    import run_c3  # noqa: E402
    from tools import official_tokenization  # noqa: E402

    tokenizer = official_tokenization.BertTokenizer(vocab_file=VOCAB, do_lower_case=True)
    out = os.path.join(HERE, "golden")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in os.listdir(HERE):
            if name.startswith("c3-"):
                shutil.copy(os.path.join(HERE, name), tmp)
        shuffle, random.shuffle = random.shuffle, lambda x: None
        processor = run_c3.c3Processor(tmp)
        random.shuffle = shuffle
        labels = processor.get_labels()
        for split, get in (("train", processor.get_train_examples), ("dev", processor.get_dev_examples),
                           ("test", processor.get_test_examples)):
            examples = get()
            for length in (64, 24):
                features = run_c3.convert_examples_to_features(examples, labels, length, tokenizer)
                with open(os.path.join(out, f"{split}-{length}.jsonl"), "w", encoding="utf-8") as f:
                    for i, question in enumerate(features):
                        rows = examples[4 * i:4 * i + 4]
                        f.write(json.dumps({
                            "guids": [e.guid for e in rows], "context": rows[0].text_a, "question": rows[0].text_c,
                            "choices": [e.text_b for e in rows], "label": int(rows[0].label),
                            "input_ids": [x.input_ids for x in question], "input_mask": [x.input_mask for x in question],
                            "segment_ids": [x.segment_ids for x in question]}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
