"""CLUENER2020's BERT+Span baseline on ``dev.json``, by its own code (run once; never needed by the
tests): its ``processors/ner_span.py`` (``CluenerProcessor``, ``convert_examples_to_features``, with
``CNerTokenizer``) and its ``BertSpanForNer`` (``models/bert_for_ner.py``, soft labels as
``run_ner_span.py`` sets them) with a tiny config over ``tests/data/bert/zh/vocab_zh.txt``, seeded;
CLUENER's copy of an early transformers saves the folder:

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    pip install torch six boto3 requests tqdm regex sentencepiece sacremoses   # what CLUENER's copy imports
    python tests/data/bert/zh/cluener/make_clueners_span_model.py /tmp/CLUENER2020

Writes ``clueners_span_model/`` (``config.json``, ``pytorch_model.bin``, ``vocab.txt``: a checkpoint as
``run_ner_span.py`` saves one; no tag names, no architectures) and ``clueners_span_outputs.json``: the
label list; per dev example its features at max_seq_length 64 (``input_ids``, ``input_mask``,
``start_ids``, ``end_ids``, ``subjects``); the model's loss in training mode with dropout off (the
gold start labels fed to the end layer), and in eval mode (its softmax of the start logits fed instead)
over all examples; its start and end logits of the first row; and each example's spans by
``bert_extract_item`` (run_ner_span.py's decoding) in eval mode.
"""

import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "vocab_zh.txt")


def main(cluener):
    sys.path.insert(0, os.path.join(cluener, "pytorch_version"))
    from models.bert_for_ner import BertSpanForNer
    from models.transformers import BertConfig
    from processors.ner_span import CluenerProcessor, convert_examples_to_features
    from processors.utils_ner import CNerTokenizer, bert_extract_item

    tokenizer = CNerTokenizer(VOCAB, do_lower_case=True)
    processor = CluenerProcessor()
    labels = processor.get_labels()
    features = convert_examples_to_features(
        examples=processor.get_dev_examples(HERE), tokenizer=tokenizer, label_list=labels, max_seq_length=64,
        cls_token_at_end=False, pad_on_left=False, cls_token="[CLS]", cls_token_segment_id=0, sep_token="[SEP]",
        pad_token=0, pad_token_segment_id=0)
    with open(VOCAB, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    config = BertConfig(vocab_size_or_config_json_file=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=len(labels),
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config.loss_type, config.soft_label = "ce", True  # as run_ner_span.py makes its config
    torch.manual_seed(20261207)
    model = BertSpanForNer(config)
    folder = os.path.join(HERE, "clueners_span_model")
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    shutil.copy(VOCAB, os.path.join(folder, "vocab.txt"))

    batch = {k: torch.tensor([getattr(f, k) for f in features])
             for k in ("input_ids", "input_mask", "segment_ids", "start_ids", "end_ids")}
    inputs = dict(input_ids=batch["input_ids"], token_type_ids=batch["segment_ids"], attention_mask=batch["input_mask"],
                  start_positions=batch["start_ids"], end_positions=batch["end_ids"])
    with torch.no_grad():
        model.train()
        train_loss = model(**inputs)[0]
        model.eval()
        eval_loss, start_logits, end_logits = model(**inputs)[:3]
        spans = []
        for f in features:  # as run_ner_span.py's evaluate: a row at a time, cut to its length
            n = f.input_len
            s, e = model(input_ids=torch.tensor([f.input_ids[:n]]), token_type_ids=torch.tensor([f.segment_ids[:n]]),
                         attention_mask=torch.tensor([f.input_mask[:n]]))[:2]
            spans.append([[int(x) for x in span] for span in bert_extract_item(s, e)])
    n0 = features[0].input_len
    out = {"labels": labels, "max_seq_length": 64, "train_loss": float(train_loss), "eval_loss": float(eval_loss),
           "start_logits_row0": start_logits[0, :n0].tolist(), "end_logits_row0": end_logits[0, :n0].tolist(),
           "spans": spans,
           "features": [{"input_ids": f.input_ids, "input_mask": f.input_mask, "start_ids": f.start_ids,
                         "end_ids": f.end_ids, "subjects": [list(x) for x in f.subjects]} for f in features]}
    with open(os.path.join(HERE, "clueners_span_outputs.json"), "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"saved {sorted(os.listdir(folder))}; losses {out['train_loss']:.6f} / {out['eval_loss']:.6f}; "
          f"{sum(map(len, spans))} spans")


if __name__ == "__main__":
    main(sys.argv[1])
