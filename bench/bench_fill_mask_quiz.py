"""The demo's fill-mask quiz against the pretraining recipe: one run per call, one JSON line out.

``bertdetr demo``'s BERT half with the recipe's knobs changeable (vocabulary size, sequence length,
model shape, learning rate and schedule, optimizer, precision, steps, more training text, a second
phase from a first's export): build-vocab and make-data on the bundled books (every 8th chapter
held out, as the demo), pretrain on one thread, then the demo's quiz (``bertdetr.bert.quiz``: 200
held-out sentences drawn with seed 0, one single-piece word hidden in each) and its frequency
baseline. Prints and appends to ``<out>/results.jsonl``: CPU seconds of the pretraining, held-out
masked-LM accuracy and loss, quiz top 1 / top 5, the baseline and the share of single-piece words.
``--attention`` also prints each layer's and head's mean attention at offsets -4..+4 on held-out
sentences (uniform would be 1/length): the picture of a model that has not learned word order.
``--counts`` prints the quiz rate of a count model instead (naive Bayes over the words on either
side, bigram counts of the training chapters): what the text allows without any training.

    python bench/bench_fill_mask_quiz.py demo                          # the demo's recipe
    python bench/bench_fill_mask_quiz.py long --steps 6000 --lr 1e-3
    python bench/bench_fill_mask_quiz.py short --seq 16 --batch 128 --preds 3 --max-positions 64
    python bench/bench_fill_mask_quiz.py phase2 --init-checkpoint /tmp/quiz/runs/short/model --steps 300
    python bench/bench_fill_mask_quiz.py more --extra-text more_books.txt --steps 2000
    python bench/bench_fill_mask_quiz.py probe --position-init 0.05 --qk-init 0.1   # not Google's init
    python bench/bench_fill_mask_quiz.py demo --attention
    python bench/bench_fill_mask_quiz.py counts --counts

The data is made once per (vocab, seq, preds, dupe, extra text) under ``<out>/data`` and shared.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import time
from collections import Counter, defaultdict

import torch


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("--out", default="/tmp/quiz")
    for flag, default in (("vocab", 3000), ("seq", 64), ("preds", 10), ("dupe", 5), ("hidden", 128), ("layers", 2),
                          ("heads", 2), ("intermediate", 512), ("steps", 1000), ("batch", 32), ("seed", 0),
                          ("max-positions", 0)):
        ap.add_argument(f"--{flag}", type=int, default=default)
    for flag, default in (("lr", 5e-4), ("warmup", 0.1), ("dropout", 0.1), ("init-range", 0.02),
                          ("weight-decay", 0.01), ("position-init", 0.0), ("qk-init", 0.0)):
        ap.add_argument(f"--{flag}", type=float, default=default)
    ap.add_argument("--optimizer", default="adam", choices=("adam", "lamb"))
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--extra-text", default="", help="more documents for training only (held-out unchanged)")
    ap.add_argument("--init-checkpoint", default="")
    ap.add_argument("--attention", action="store_true")
    ap.add_argument("--counts", action="store_true")
    ap.add_argument("--quiz-every", type=int, default=0, help="also quiz the checkpoints of every this many steps")
    return ap.parse_args()


def make_data(a: argparse.Namespace) -> str:
    from bertdetr.bert.data.vocab import VocabConfig, build_vocab
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
    from bertdetr.bert.pretraining.make_data import make_pretraining_data
    from bertdetr.demo import _split_documents, bundled_books

    extra = os.path.basename(a.extra_text)
    folder = os.path.join(a.out, "data", f"v{a.vocab}_s{a.seq}_p{a.preds}_d{a.dupe}_{extra}")
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    os.makedirs(folder, exist_ok=True)
    train_txt, held_txt = _split_documents(bundled_books(), folder)
    if a.extra_text:
        with open(train_txt, "a", encoding="utf-8") as f, open(a.extra_text, encoding="utf-8") as g:
            f.write("\n" + g.read())
    vocab = os.path.join(folder, "vocab.txt")
    build_vocab([train_txt], vocab, VocabConfig(vocab_size=a.vocab, num_unused=10))
    for src, dst, dupe, seed in ((train_txt, "train.tfrecord", a.dupe, 0), (held_txt, "heldout.tfrecord", 1, 1)):
        make_pretraining_data([src], os.path.join(folder, dst), vocab, PretrainingDataConfig(
            max_seq_length=a.seq, max_predictions_per_seq=a.preds, dupe_factor=dupe, random_seed=seed))
    open(os.path.join(folder, "done"), "w").close()
    return folder


def probe_init(a: argparse.Namespace):
    """``build_bert_model`` with the probes' departures from Google's init: a sinusoidal position
    table (Vaswani et al.) scaled to std ``--position-init``, query/key kernels of std ``--qk-init``."""
    import bertdetr.bert.model as bert_model

    build = bert_model.build_bert_model

    def patched(config):
        model = build(config)
        with torch.no_grad():
            if a.position_init:
                L, D = config.max_position_embeddings, config.hidden_size
                angle = torch.arange(L)[:, None] / 10000 ** (torch.arange(0, D, 2) / D)
                table = torch.stack([angle.sin(), angle.cos()], -1).reshape(L, D)
                model.embeddings.position_embeddings.weight.copy_(table / table.std() * a.position_init)
            if a.qk_init:
                for layer in model.layers:
                    w = layer.self_attn.in_proj_weight
                    torch.nn.init.trunc_normal_(w[: 2 * w.shape[1]], std=a.qk_init, a=-2 * a.qk_init, b=2 * a.qk_init)
        return model

    bert_model.build_bert_model = patched


def attention_by_offset(bert, tok, held_txt: str, sentences: int = 200) -> dict:
    """Mean attention probability at offsets -4..+4 per (layer, head), over held-out sentences."""
    from bertdetr.bert.inference import encode
    from bertdetr.bert.quiz import held_out_sentences
    from bertdetr.nn.transformer import MultiHeadAttention

    caught = []

    def hook(module, args, kwargs):
        # every position as a query: the last layer runs only at the output positions (key = all)
        keys = args[1] if len(args) > 1 and args[1] is not None else args[0]
        caught.append(module.attention_weights(keys, attn_mask=kwargs.get("attn_mask")))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in bert.modules()
               if isinstance(m, MultiHeadAttention)]
    sums: dict = defaultdict(lambda: torch.zeros(9))
    n = 0
    for s in held_out_sentences(held_txt)[:sentences]:
        ids = encode(tok, s, bert.config.max_position_embeddings)
        L = len(ids)
        if L < 12:
            continue
        caught.clear()
        with torch.no_grad():
            bert(input_ids=torch.tensor([ids]), input_mask=torch.ones(1, L, dtype=torch.long),
                 segment_ids=torch.zeros(1, L, dtype=torch.long), masked_lm_positions=torch.tensor([[1]]))
        for layer, a in enumerate(caught):
            for head in range(a.shape[1]):
                rows = torch.stack([a[0, head, i, i - 4:i + 5] for i in range(4, L - 4)])
                sums[(layer, head)] += rows.mean(0) * L  # x L: 1.0 is uniform whatever the length
        n += 1
    for h in handles:
        h.remove()
    return {f"layer {k[0]} head {k[1]}": [round(x, 2) for x in (v / n).tolist()] for k, v in sums.items()}


def count_model_rate(folder: str, vocab_size: int, seed: int = 0) -> float:
    """The quiz (the same draw) answered by naive Bayes over the two neighbouring words."""
    from bertdetr.bert.data.tokenization import FullTokenizer
    from bertdetr.bert.quiz import WORD, _normalise, draw_hidden_words, held_out_sentences

    tok = FullTokenizer(os.path.join(folder, "vocab.txt"))
    items, _, _ = draw_hidden_words(tok, held_out_sentences(os.path.join(folder, "heldout.txt")), 200, seed, 64)
    with open(os.path.join(folder, "train.txt"), encoding="utf-8") as f:
        lines = [[_normalise(w) for w in WORD.findall(line)] for line in f]
    unigram = Counter(w for line in lines for w in line)
    pairs: dict = {-1: Counter(), 1: Counter()}
    for line in lines:
        for i, w in enumerate(line):
            for o in (-1, 1):
                if 0 <= i + o < len(line):
                    pairs[o][(line[i + o], w)] += 1
    words = [w for w in unigram if w in tok.vocab]
    total, k = sum(unigram.values()), 0.1
    hits = 0
    for s, a, b in items:
        left, right = WORD.findall(s[:a])[-1:], WORD.findall(s[b:])[:1]
        context = [(-1, _normalise(w)) for w in left] + [(1, _normalise(w)) for w in right]

        def score(w):
            p = math.log(unigram[w] / total)
            for o, c in context:  # log P(c | w) - log P(c): each neighbour's evidence
                p += math.log((pairs[o][(c, w)] + k) / (unigram[w] + k * len(words))) - math.log(unigram[c] / total + 1e-9)
            return p

        hits += _normalise(s[a:b]) in sorted(words, key=score, reverse=True)[:5]
    return hits / len(items)


def quiz_curve(bert, tok, run_dir: str, held_txt: str, train_txt: str) -> dict:
    """The quiz's top-5 rate of each checkpoint in ``run_dir`` (weights loaded into ``bert``)."""
    import glob

    from bertdetr.bert.quiz import fill_mask_quiz, held_out_sentences

    curve = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "ckpt-*.pt"))):
        bert.load_state_dict(torch.load(path, weights_only=True, map_location="cpu")["model"])
        bert.eval()
        step = int(os.path.basename(path)[5:-3])
        curve[step] = fill_mask_quiz(bert, tok, held_out_sentences(held_txt), 200, 0).rate(5)
    return curve


def main() -> None:
    a = parse()
    torch.set_num_threads(1)
    folder = make_data(a)
    if a.counts:
        print(json.dumps({"name": a.name, "count_model_top5": count_model_rate(folder, a.vocab)}))
        return
    from bertdetr.bert.inference import load_model
    from bertdetr.bert.model import BertConfig
    from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
    from bertdetr.bert.quiz import frequency_guess_rate
    from bertdetr.demo import show_fill_mask_quiz

    probe_init(a)
    with open(os.path.join(folder, "vocab.txt"), encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    model = BertConfig(vocab_size=vocab_size, hidden_size=a.hidden, num_hidden_layers=a.layers,
                       num_attention_heads=a.heads, intermediate_size=a.intermediate,
                       max_position_embeddings=a.max_positions or a.seq, hidden_dropout_prob=a.dropout,
                       attention_probs_dropout_prob=a.dropout, initializer_range=a.init_range)
    config = PretrainConfig(
        input_files=[os.path.join(folder, "train.tfrecord")], output_dir=os.path.join(a.out, "runs", a.name),
        model=model, vocab_file=os.path.join(folder, "vocab.txt"), eval_files=[os.path.join(folder, "heldout.tfrecord")],
        init_checkpoint=a.init_checkpoint or None, batch_size=a.batch, num_train_steps=a.steps,
        num_warmup_steps=max(1, int(a.steps * a.warmup)), learning_rate=a.lr, optimizer=a.optimizer,
        weight_decay=a.weight_decay, bf16=a.bf16, seed=a.seed, save_every=a.quiz_every or a.steps,
        keep_last=a.steps // a.quiz_every + 1 if a.quiz_every else 1, log_every=50, num_threads=1,
        progress=False, overwrite=True)
    cpu = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = pretrain(config)
    cpu = time.process_time() - cpu
    bert, tok = load_model(summary["export"])
    train_txt, held_txt = (os.path.join(folder, f) for f in ("train.txt", "heldout.txt"))
    with contextlib.redirect_stdout(io.StringIO()):
        quiz = show_fill_mask_quiz(bert, tok, held_txt, train_txt, summary["export"], 0)
    m = summary["eval"]
    row = dict(name=a.name, cpu_s=round(cpu, 1), masked_lm=round(m["masked_lm_accuracy"], 3),
               masked_lm_loss=round(m["masked_lm_loss"], 3), top1=quiz.rate(1), top5=quiz.rate(5),
               baseline=frequency_guess_rate(quiz, tok, train_txt)[0], coverage=round(quiz.coverage, 3),
               args={k: v for k, v in vars(a).items() if k not in ("name", "out", "attention", "counts")})
    if a.quiz_every:
        row["quiz_top5_by_step"] = quiz_curve(bert, tok, config.output_dir, held_txt, train_txt)
    if a.attention:
        row["attention_by_offset"] = attention_by_offset(bert, tok, held_txt)
    print(json.dumps(row))
    with open(os.path.join(a.out, "results.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
