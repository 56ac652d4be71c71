"""Golden classification features made by Google's own run_classifier.py (bert-tensorflow 1.0.4).

Run once with a Python that has TensorFlow and bert-tensorflow 1.0.4 (never needed by the tests):

    /work/venvs/tf/bin/python tests/data/bert/glue/make_goldens.py

For each task's GLUE-format files in this folder (cola, mnli, mrpc, xnli; every split Google's
processor defines) it writes, with Google's processors, ``convert_single_example`` and
``file_based_convert_examples_to_features`` and the bert-base-uncased vocab:
``golden/<task>-<split>-<max_seq_length>.jsonl`` (one example and its features a line) for
max_seq_length 128 and 20 (short: exercises ``_truncate_seq_pair``), and Google's own TFRecord
``golden/<task>-<split>-128.tf_record``.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import types  # noqa: E402

import tensorflow.compat.v1 as tf  # noqa: E402

# bert/modeling.py (imported by run_classifier) does `from tensorflow.contrib import layers`, which
# TF 2 lacks; only its layer_norm uses it, and nothing here builds the model: a placeholder
# module lets the import through without touching the feature code.
sys.modules.setdefault("tensorflow.contrib", types.ModuleType("tensorflow.contrib")).layers = None
from bert import run_classifier, tokenization  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "vocab-uncased.txt")
TASKS = {"cola": ("CoLA", run_classifier.ColaProcessor), "mnli": ("MNLI", run_classifier.MnliProcessor),
         "mrpc": ("MRPC", run_classifier.MrpcProcessor), "xnli": ("XNLI", run_classifier.XnliProcessor)}


def main():
    tf.logging.set_verbosity(tf.logging.ERROR)
    # bert-tensorflow 1.0.4's tokenizer reads --preserve_unused_tokens (default False, Google's
    # behaviour): parse the flags with their defaults.
    tf.flags.FLAGS([sys.argv[0]])
    tokenizer = tokenization.FullTokenizer(vocab_file=VOCAB, do_lower_case=True)
    out = os.path.join(HERE, "golden")
    os.makedirs(out, exist_ok=True)
    for task, (folder, cls) in TASKS.items():
        processor = cls()
        labels = processor.get_labels()
        data_dir = os.path.join(HERE, folder)
        for split, get in (("train", processor.get_train_examples), ("dev", processor.get_dev_examples),
                           ("test", processor.get_test_examples)):
            try:
                examples = get(data_dir)
            except NotImplementedError:  # XNLI defines no test set
                continue
            for length in (128, 20):
                with open(os.path.join(out, f"{task}-{split}-{length}.jsonl"), "w", encoding="utf-8") as f:
                    for i, ex in enumerate(examples):
                        feat = run_classifier.convert_single_example(i, ex, labels, length, tokenizer)
                        f.write(json.dumps({
                            "guid": ex.guid, "text_a": ex.text_a, "text_b": ex.text_b, "label": ex.label,
                            "label_list": labels, "input_ids": feat.input_ids, "input_mask": feat.input_mask,
                            "segment_ids": feat.segment_ids, "label_id": feat.label_id,
                            "is_real_example": bool(feat.is_real_example)}, ensure_ascii=False) + "\n")
            run_classifier.file_based_convert_examples_to_features(
                examples, labels, 128, tokenizer, os.path.join(out, f"{task}-{split}-128.tf_record"))
            print(task, split, len(examples), file=sys.stderr)


if __name__ == "__main__":
    main()
