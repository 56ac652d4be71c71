"""Golden examples, features and decoding made by CLUE's own CHID code from this folder's files
(run once; never needed by the tests):

    git clone https://github.com/CLUEbenchmark/CLUE /tmp/CLUE
    python tests/data/bert/chid/make_goldens.py /tmp/CLUE

Runs ``baselines/models_pytorch/mrc_pytorch/preprocess/CHID_preprocess.py``: ``read_chid_examples``
(with the answer files; the test set without) and ``convert_examples_to_features`` with the
``BertTokenizer`` of ``tools/official_tokenization.py`` over ``../zh/vocab_zh.txt``, lowercasing, at
max_seq_length 32 (the long passage overflows the window) and 64, and writes
``golden/<split>-<max_seq_length>.jsonl`` (a line per blank: example_id, tag, doc_tokens, options,
label, input_ids, input_masks, segment_ids, choice_masks). ``golden/decode.json``: seeded random
logits of the train set's blanks (every other one's right candidate raised by 4) and ``get_final_predictions``' answers for them (its greedy
assignment), with ``evaluate``'s accuracy of those answers against train_answer.json.
"""

import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "zh", "vocab_zh.txt")


def main(clue):
    sys.path.insert(0, os.path.join(clue, "baselines", "models_pytorch", "mrc_pytorch"))
    from preprocess import CHID_preprocess as chid  # noqa: E402
    from tools import official_tokenization  # noqa: E402

    tokenizer = official_tokenization.BertTokenizer(vocab_file=VOCAB, do_lower_case=True)
    out = os.path.join(HERE, "golden")
    os.makedirs(out, exist_ok=True)
    for split in ("train", "dev", "test"):
        answers = os.path.join(HERE, f"{split}_answer.json")
        training = os.path.isfile(answers)
        examples = chid.read_chid_examples(os.path.join(HERE, f"{split}.json"), answers if training else None,
                                           is_training=training)
        for length in (32, 64):
            features = chid.convert_examples_to_features(examples, tokenizer, length, 10)
            with open(os.path.join(out, f"{split}-{length}.jsonl"), "w", encoding="utf-8") as f:
                for ex, feat in zip(examples, features):
                    f.write(json.dumps({
                        "example_id": ex.example_id, "tag": ex.tag, "doc_tokens": ex.doc_tokens, "options": ex.options,
                        "label": feat.label, "input_ids": feat.input_ids, "input_masks": feat.input_masks,
                        "segment_ids": feat.segment_ids, "choice_masks": feat.choice_masks}, ensure_ascii=False) + "\n")
        if split == "train":
            rng = random.Random(0)
            results = [chid.RawResult(unique_id=i, example_id=ex.example_id, tag=ex.tag,
                                      logit=[rng.uniform(-3, 3) + (4 if k == ex.answer_index and i % 2 == 0 else 0)
                                             for k in range(len(ex.options))])
                       for i, ex in enumerate(examples)]
            decoded = chid.get_final_predictions(results, os.path.join("/tmp", "chid_raw_predictions.pkl"), g=True)
            predictions = {tag: choice for tag, choice in decoded}
            pred_file = "/tmp/chid_predictions.json"
            chid.write_predictions(decoded, pred_file)
            with open(os.path.join(out, "decode.json"), "w", encoding="utf-8") as f:
                json.dump({"logits": [r.logit for r in results], "predictions": predictions,
                           "accuracy_percent": chid.evaluate(answers, pred_file)}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
