"""A BERT+CRF model as CLUENER2020's baseline saves one, and its outputs (run once; never needed by
the tests): CLUENER's ``BertCrfForNer`` (``pytorch_version/models/bert_for_ner.py``, on its own copy
of an early transformers, whose ``save_pretrained`` writes the folder) with a tiny config over
``tests/data/bert/zh/vocab_zh.txt`` and CLUENER's label list, seeded, in eval mode; its features of
``dev.json`` as ``make_crf_features_golden.py`` makes them (CLUENER's code, max_seq_length 64):

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    pip install torch six boto3 requests tqdm regex sentencepiece sacremoses   # what CLUENER's copy imports
    python tests/data/bert/zh/cluener/make_clueners_crf_model.py /tmp/CLUENER2020

Writes ``clueners_crf_model/`` (``config.json`` and ``pytorch_model.bin`` as CLUENER's
``run_ner_crf.py`` saves a checkpoint: no label names, no architectures; its ``vocab.txt`` as its
tokenizer saves it) and ``clueners_crf_outputs.json``: for every dev example the loss its
forward returns (``-1 * crf(...)``, the mean over rows), the paths of ``model.crf.decode(logits,
attention_mask)`` within each row's length, and the logits of the first row.
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
    from models.bert_for_ner import BertCrfForNer
    from models.transformers import BertConfig
    from processors.ner_seq import CluenerProcessor

    labels = CluenerProcessor().get_labels()
    with open(VOCAB, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    config = BertConfig(vocab_size_or_config_json_file=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=len(labels))
    config.loss_type = "ce"  # what run_ner_crf.py's argparse adds to the config
    torch.manual_seed(20261207)
    model = BertCrfForNer(config)
    with torch.no_grad():  # a trained CRF, not the uniform start: the paths then depend on it
        for p in model.crf.parameters():
            p.normal_(0, 2)
    model.eval()
    folder = os.path.join(HERE, "clueners_crf_model")
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    shutil.copy(VOCAB, os.path.join(folder, "vocab.txt"))

    with open(os.path.join(HERE, "crf_features_golden.json"), encoding="utf-8") as f:
        features = json.load(f)["features"]
    batch = {k: torch.tensor([f[k] for f in features]) for k in ("input_ids", "input_mask", "segment_ids", "label_ids")}
    with torch.no_grad():
        loss, logits = model(input_ids=batch["input_ids"], token_type_ids=batch["segment_ids"],
                             attention_mask=batch["input_mask"], labels=batch["label_ids"])
        tags = model.crf.decode(logits, batch["input_mask"]).squeeze(0)
    lengths = [f["input_len"] for f in features]
    out = {"loss": float(loss), "paths": [row[:n].tolist() for row, n in zip(tags, lengths)],
           "logits_row0": logits[0, :lengths[0]].tolist()}
    with open(os.path.join(HERE, "clueners_crf_outputs.json"), "w", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"saved {sorted(os.listdir(folder))}; loss {out['loss']:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
