"""Multiple choice (C3's task): our ``BertForMultipleChoice`` against transformers' on the same
weights and batches: a training step (forward, loss, backward, the same ``torch.optim.AdamW``) and
inference, questions per second.

    python bench/bench_multiple_choice.py [--config small|base] [--batch 8] [--repeats 5]

The batches are C3-like questions made from the bundled Chinese prose (``tests/data/bert/zh``): a
document of five or six sentences, a question, four choices (one of them from the document),
turned into features by ``bert multiple-choice``'s own code (CLUE's layout: ``[CLS] document [SEP]
question [SEP] choice [SEP]``) and cut to the batch's longest row, as the trainer does. Same
BERT config and random weights on both sides (transformers' loaded from ours, ``attn_implementation
="sdpa"``), dropout 0.1 in training, fp32 on the CPU, the sides alternating; the best of
``--repeats`` rounds each. Ours reads the pooled [CLS] vector only, so its last layer runs at
[CLS] alone; transformers' runs it at every position.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_pipelines import best_seconds  # noqa: E402

from bertdetr.bert.data.tokenization import FullTokenizer  # noqa: E402
from bertdetr.bert.finetuning.finetune import take_batch  # noqa: E402
from bertdetr.bert.finetuning.multiple_choice_data import ChoiceExample, examples_to_tensors  # noqa: E402
from bertdetr.bert.heads import BertForMultipleChoice  # noqa: E402
from bertdetr.bert.model import BertConfig, build_bert_model  # noqa: E402

ZH = os.path.join(os.path.dirname(HERE), "tests", "data", "bert", "zh")
SHAPES = {"small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
          "base": {}}


def questions(n: int, rng: random.Random) -> list[ChoiceExample]:
    """C3-like questions over the bundled prose's documents."""
    with open(os.path.join(ZH, "corpus_zh.txt"), encoding="utf-8") as f:
        docs = [d.split("\n") for d in f.read().strip().split("\n\n")]
    lines = [line for d in docs for line in d]
    out = []
    for i in range(n):
        doc = rng.choice(docs)
        right = rng.choice(doc)
        choices = [right, *rng.sample([x for x in lines if x not in doc], 3)]
        rng.shuffle(choices)
        out.append(ChoiceExample(guid=f"bench-{i}", context="\n".join(doc), question="下面哪一句出自这段话？",
                                 choices=choices, label=choices.index(right)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(SHAPES), default="small")
    p.add_argument("--batch", type=int, default=8, help="questions per batch (four choices each)")
    p.add_argument("--max-seq-length", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    vocab = os.path.join(ZH, "vocab_zh.txt")
    with open(vocab, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    config = BertConfig(vocab_size=vocab_size, **SHAPES[args.config])
    tokenizer = FullTokenizer(vocab, do_lower_case=True)
    data = examples_to_tensors(questions(args.batch * 4, random.Random(0)), args.max_seq_length, tokenizer)
    batches = [take_batch(data, slice(i, i + args.batch), torch.device("cpu"))
               for i in range(0, len(data["label_ids"]), args.batch)]
    torch.manual_seed(0)
    ours = BertForMultipleChoice(build_bert_model(config), num_choices=4)
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        hf = transformers.BertForMultipleChoice.from_pretrained(folder, attn_implementation="sdpa")
    sides = {"ours": ours, "transformers": hf}

    def hf_inputs(b):
        return dict(input_ids=b["input_ids"], attention_mask=b["input_mask"], token_type_ids=b["segment_ids"],
                    labels=b["label_ids"])

    ours.eval(), hf.eval()
    with torch.no_grad():
        diff = (ours(**batches[0])["logits"] - hf(**hf_inputs(batches[0])).logits).abs().max().item()
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=5e-5, weight_decay=0.01) for name, m in sides.items()}

    def train(name):
        model = sides[name]
        for b in batches:
            loss = model(**b)["loss"] if name == "ours" else model(**hf_inputs(b)).loss
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)

    def infer(name):
        with torch.inference_mode():
            for b in batches:
                sides[name](**b) if name == "ours" else sides[name](**hf_inputs(b))

    for m in sides.values():
        m.train()
    train("ours"), train("transformers")  # warm-up
    t_train = best_seconds({n: n for n in sides}, train, args.repeats, "cpu")
    for m in sides.values():
        m.eval()
    t_infer = best_seconds({n: n for n in sides}, infer, args.repeats, "cpu")
    n = len(data["label_ids"])
    T = [b["input_ids"].shape[-1] for b in batches]
    print(f"config {args.config}, {len(batches)} batches of {args.batch} questions x 4 choices, rows cut to "
          f"{min(T)}-{max(T)} tokens, {args.threads} threads; eval logits differ by at most {diff:.1e}")
    print("| | ours | transformers | ratio |\n|---|---|---|---|")
    for what, t in (("training step (questions/s)", t_train), ("inference (questions/s)", t_infer)):
        print(f"| {what} | {n / t['ours']:.1f} | {n / t['transformers']:.1f} | "
              f"**{t['transformers'] / t['ours']:.2f}x** |")


if __name__ == "__main__":
    main()
