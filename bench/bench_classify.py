"""Fine-tuning step for classification: bertdetr vs transformers BertForSequenceClassification.

Same config, weights and batch on both sides, fp32 on CPU, ``torch.set_num_threads(2)``, dropout
0.1 on. The batch is what ``bertdetr bert classify`` feeds Google's run_classifier features with:
sentence pairs (consecutive sentences of the bundled books, MRPC/MNLI-like lengths) converted by
``convert_single_example`` at ``--max-seq-length 128`` with the bert-base-uncased vocab.

Rows (all timed steps alternate round-robin, medians, so other load hits every side alike):

- ``ours`` / ``hf``: the model step on the same padded [B,128] batch: forward + loss + backward +
  ``torch.optim.AdamW(fused=True)`` on both;
- ``ours classify step``: what ``classify`` runs per step (``finetune.finetune_step`` on the batch
  ``finetune.take_batch`` makes: cut to its longest real row), Google's AdamWeightDecay, global-norm
  clipping and schedule;
- ``ours classify step, --compile`` (with ``--compile``): the same step as ``classify --compile`` runs
  it, the model and the update compiled (inductor; the warm-up call compiles).

    python bench/bench_classify.py                       # base B=32 and small B=32, ~6 min quiet
    python bench/bench_classify.py --configs small --repeats 3
    python bench/bench_classify.py --configs small --repeats 7 --compile   # + the step compiled whole
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_bert_model import alternate  # noqa: E402

from bertdetr.bert.finetuning.classifier import create_model  # noqa: E402
from bertdetr.bert.finetuning.finetune import take_batch as _batch  # noqa: E402
from bertdetr.bert.finetuning.classifier_data import (  # noqa: E402
    InputExample,
    convert_examples_to_features,
    features_to_tensors,
)
from bertdetr.bert.model import BertConfig  # noqa: E402
from bertdetr.bert.finetuning.finetune import FinetuneConfig, finetune_step, make_tuning  # noqa: E402
from bertdetr.training.distributed import Distributed  # noqa: E402
from bertdetr.bert.data.tokenization import FullTokenizer  # noqa: E402
from bertdetr.bert.weights import to_hf_state_dict  # noqa: E402
from bertdetr.demo import bundled_books  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "tests", "data", "bert", "vocab-uncased.txt")
CONFIGS = {
    "base": BertConfig(),
    "small": BertConfig(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
}


def pair_batch(B: int, T: int, offset: int = 0) -> dict[str, torch.Tensor]:
    """B sentence pairs (consecutive lines of the bundled books) as run_classifier's features."""
    tokenizer = FullTokenizer(VOCAB, do_lower_case=True)
    with open(bundled_books(), encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.split()) >= 4]
    examples = [InputExample(f"x-{i}", lines[offset + 2 * i], lines[offset + 2 * i + 1], str(i % 2))
                for i in range(B)]
    return features_to_tensors(convert_examples_to_features(examples, ["0", "1"], T, tokenizer))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="base,small")
    ap.add_argument("--batch", type=int, default=32, help="Google's --train_batch_size default")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--compile", action="store_true",
                    help="also the classify step compiled whole (--compile: the model and the update; the warm-up "
                         "call compiles, untimed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    print(f"# load average {os.getloadavg()}; torch {torch.__version__}, transformers {transformers.__version__}")
    rows = []
    for name in args.configs.split(","):
        config = CONFIGS[name]
        data = pair_batch(args.batch, args.seq, offset=1000)
        real = data["input_mask"].sum(1).float()
        print(f"# {name}: B={args.batch} T={args.seq}, real tokens per row mean {real.mean():.1f} max {real.max():.0f}")
        torch.manual_seed(0)
        ours = create_model(config, ["0", "1"])
        hf_config = transformers.BertConfig(**config.to_hf_dict("BertForSequenceClassification"), num_labels=2,
                                            attn_implementation="sdpa")
        hf = transformers.BertForSequenceClassification(hf_config)
        state = {"bert." + k: v for k, v in to_hf_state_dict(ours.bert.state_dict(), config).items()}
        state.update({"classifier.weight": ours.output_weights.data, "classifier.bias": ours.output_bias.data})
        missing, unexpected = hf.load_state_dict(state, strict=False)
        assert not missing and not unexpected, (missing, unexpected)
        f = {k: v.long() for k, v in data.items()}
        hf_f = dict(input_ids=f["input_ids"], attention_mask=f["input_mask"], token_type_ids=f["segment_ids"],
                    labels=f["label_ids"])
        ours.eval()
        hf.eval()
        with torch.no_grad():
            lo, lh = ours(**f)["loss"].item(), hf(**hf_f).loss.item()
        print(f"# {name}: eval loss ours {lo:.6f} hf {lh:.6f}", flush=True)
        assert abs(lo - lh) < 1e-4
        ours.train()
        hf.train()
        o_opt = torch.optim.AdamW(ours.parameters(), lr=5e-5, weight_decay=0.01, fused=True)
        h_opt = torch.optim.AdamW(hf.parameters(), lr=5e-5, weight_decay=0.01, fused=True)

        def ours_step():
            ours(**f)["loss"].backward()
            o_opt.step()
            o_opt.zero_grad(set_to_none=True)

        def hf_step():
            hf(**hf_f).loss.backward()
            h_opt.step()
            h_opt.zero_grad(set_to_none=True)

        cpu = torch.device("cpu")
        options = FinetuneConfig(output_dir=tempfile.gettempdir(), max_seq_length=args.seq, learning_rate=5e-5)
        tuning = make_tuning(ours, options, Distributed(), cpu, num_train_steps=10_000, num_warmup_steps=1000)

        def classify_step():
            finetune_step(tuning, [_batch(data, slice(None), cpu)], 0)

        steps = {"ours": ours_step, "hf": hf_step, "ours classify step": classify_step}
        if args.compile:  # the whole step compiled (inductor): a copy of the model, its own optimizer
            compiled = make_tuning(copy.deepcopy(ours), dataclasses.replace(options, compile=True), Distributed(), cpu,
                                   num_train_steps=10_000, num_warmup_steps=1000)
            steps["ours classify step, --compile"] = lambda: finetune_step(compiled, [_batch(data, slice(None), cpu)], 0)
        times = alternate(steps, args.repeats)
        hf_s = statistics.median(w for w, _ in times["hf"])
        for what, t in times.items():
            wall = statistics.median(w for w, _ in t)
            row = dict(config=name, what=what, batch=args.batch, seq=args.seq, step_s=round(wall, 4),
                       seq_per_s=round(args.batch / wall, 2), cpu_s=round(statistics.median(c for _, c in t), 3),
                       vs_hf=round(hf_s / wall, 2))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"# load average {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
