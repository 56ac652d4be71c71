"""The features CLUENER2020's BERT+CRF baseline makes of ``dev.json`` (run once; never needed by
the tests): its ``CluenerProcessor`` and ``convert_examples_to_features``
(``pytorch_version/processors/ner_seq.py``) with its ``CNerTokenizer`` (``processors/utils_ner.py``)
and the arguments its ``run_ner_crf.py`` passes for BERT:

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    python tests/data/bert/zh/cluener/make_crf_features_golden.py /tmp/CLUENER2020

CLUENER's files import ``BertTokenizer`` from their own copy of an early transformers; a stand-in
with the two things ``CNerTokenizer`` and the feature code use of it (``vocab``, from
``tests/data/bert/zh/vocab_zh.txt``, and ``convert_tokens_to_ids``) is put in its place, so the
tokenizing, labelling and layout are CLUENER's own code. Writes ``crf_features_golden.json``: the
label list, then per example its ``input_ids``, ``input_mask``, ``segment_ids``, ``input_len`` and
``label_ids`` at ``eval_max_seq_length`` 64 (every dev sentence fits, as CLUENER cuts longer ones
where ``bert ner`` makes windows).
"""

import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "vocab_zh.txt")
STAND_IN = '''


class BertTokenizer:
    cls_token, sep_token, pad_token = "[CLS]", "[SEP]", "[PAD]"

    def __init__(self, vocab_file, do_lower_case=False):
        with open(vocab_file, encoding="utf-8") as f:
            self.vocab = collections.OrderedDict((line.rstrip("\\n"), i) for i, line in enumerate(f))

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]
'''


def main(cluener):
    stub = tempfile.mkdtemp()
    os.makedirs(os.path.join(stub, "models", "transformers"))
    open(os.path.join(stub, "models", "__init__.py"), "w").close()
    with open(os.path.join(stub, "models", "transformers", "__init__.py"), "w") as f:
        f.write(STAND_IN)
    sys.path[:0] = [stub, os.path.join(cluener, "pytorch_version")]
    from processors.ner_seq import CluenerProcessor, convert_examples_to_features
    from processors.utils_ner import CNerTokenizer

    tokenizer = CNerTokenizer(VOCAB, do_lower_case=True)
    processor = CluenerProcessor()
    labels = processor.get_labels()
    examples = processor.get_dev_examples(HERE)
    features = convert_examples_to_features(
        examples=examples, tokenizer=tokenizer, label_list=labels, max_seq_length=64, cls_token_at_end=False,
        pad_on_left=False, cls_token=tokenizer.cls_token, cls_token_segment_id=0, sep_token=tokenizer.sep_token,
        pad_token=tokenizer.convert_tokens_to_ids([tokenizer.pad_token])[0], pad_token_segment_id=0)
    out = {"labels": labels, "max_seq_length": 64,
           "features": [{k: getattr(f, k) for k in ("input_ids", "input_mask", "segment_ids", "input_len", "label_ids")}
                        for f in features]}
    with open(os.path.join(HERE, "crf_features_golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"wrote {len(features)} examples' features")


if __name__ == "__main__":
    main(sys.argv[1])
