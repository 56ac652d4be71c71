"""``bertdetr demo``: the main job end to end on bundled data, no download needed.

BERT: learn a WordPiece vocab from the bundled public-domain books, make pretraining data (NSP
pairs, masked LM, as Google's create_pretraining_data.py), pretrain a tiny BERT, evaluate it on
held-out chapters against the frequency baseline, fill in some [MASK]s, and fine-tune it to tell
which book a sentence is from, next to the same model fine-tuned from random weights.
DETR: generate a synthetic shapes dataset, train a tiny DETR, evaluate COCO mAP against the
untrained model, and draw its predictions. With two CPUs free the DETR half runs in a second
process beside the BERT half (``run``).

Every step is the library call behind a CLI command (printed alongside), so the demo doubles as a
walkthrough: ``bertdetr bert build-vocab``, ``make-data``, ``pretrain``, ``fill-mask``, ``classify``;
``bertdetr detr make-shapes``, ``train``, ``eval``, ``predict``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import resources


def bundled_corpus() -> str:
    """Path of Google BERT's ``sample_text.txt`` (public domain, Gutenberg), bundled."""
    return str(resources.files("bertdetr") / "data" / "sample_text.txt")


def bundled_books() -> str:
    """Path of the bundled books corpus (public domain; sources in ``pd_books.SOURCES.md``):
    one sentence a line, a blank line between chapters, as Google's pretraining input."""
    return str(resources.files("bertdetr") / "data" / "pd_books.txt")


def add_parser(systems) -> None:
    from bertdetr.options import add_flag

    p = systems.add_parser("demo", help="run the main job on bundled data (no download)",
                           description="Pretrain a tiny BERT on bundled books and train a tiny DETR on "
                           "synthetic shapes, evaluate both, and show what they learned. With two or more "
                           "CPUs free the two halves run side by side, each in its own process.")
    p.add_argument("--out", default="demo_out", help="folder for the demo's outputs")
    p.add_argument("--only", choices=("bert", "detr"), help="run one half only (default: both)")
    p.add_argument("--bert-steps", dest="bert_steps", type=int, default=1000, help="BERT pretraining steps")
    p.add_argument("--detr-epochs", dest="detr_epochs", type=int, default=12, help="DETR training epochs")
    p.add_argument("--detr-images", dest="detr_images", type=int, default=1600, help="synthetic training images")
    p.add_argument("--finetune-epochs", dest="finetune_epochs", type=float, default=3.0,
                   help="epochs of the book-classification fine-tuning after pretraining (0: skip it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the initial weights and the training")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads in all (default: the CPUs free for this process, see bertdetr.training.threads)")
    add_flag(p, "--one-at-a-time", dest="one_at_a_time",
             help="run the BERT and DETR halves one after the other even with two or more CPUs free")
    add_flag(p, "--progress", dest="progress", default=True, help="show progress bars")
    # the DETR half beside BERT: the parent has said what runs where and says when all is done
    p.add_argument("--side-process", dest="side_process", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Both halves, or ``--only`` one. With two or more threads for both halves, DETR runs in a
    second process beside BERT, the threads split between them: one thread per process uses a core
    fully, where two threads in one process gain only 1.3-1.4x over one (measured, 2 cores: the
    demo's tiny BERT 58 against 84 ms a step, its DETR 63 against 81 ms), so side by side the demo
    takes about two thirds of the time of one half after the other. DETR's report is printed when
    BERT's is done."""
    from bertdetr.errors import BertDetrError, require
    from bertdetr.fileio import check_writable
    from bertdetr.training.threads import available_cpus, choose_num_threads, set_num_threads

    require(args.threads is None or args.threads >= 1, f"--threads must be >= 1, got {args.threads}")
    require(args.bert_steps >= 1 and args.detr_epochs >= 1 and args.detr_images >= 1,
            "--bert-steps, --detr-epochs and --detr-images must be >= 1")
    threads = choose_num_threads(args.threads)
    halves = ("bert", "detr") if args.only is None else (args.only,)
    side_by_side = len(halves) == 2 and threads >= 2 and not args.one_at_a_time
    check_writable(os.path.join(args.out, "detr" if "detr" in halves else "bert", "demo.log"))
    t0 = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    child, log_path = None, os.path.join(args.out, "detr", "demo.log")
    if side_by_side:
        detr_threads = threads // 2
        bert_threads = threads - detr_threads
        print(f"using {threads} CPU threads (load average {load:.1f}): BERT here with {bert_threads}, DETR "
              f"alongside in a second process with {detr_threads}; its report follows BERT's (log: {log_path})")
        child = _start_detr_process(args, detr_threads, log_path)
    else:
        bert_threads = detr_threads = threads
        if not args.side_process:
            print(f"using {threads} CPU thread(s) of {available_cpus():g} (load average {load:.1f})")
    try:
        if "bert" in halves:
            set_num_threads(bert_threads)
            run_bert(os.path.join(args.out, "bert"), args.bert_steps, args.seed, bert_threads, args.progress)
            if args.finetune_epochs > 0:  # run_bert exports its model to bert/run/model
                run_bert_finetune(os.path.join(args.out, "bert", "classify"),
                                  os.path.join(args.out, "bert", "run", "model"), args.seed, args.finetune_epochs,
                                  threads=bert_threads)
        if child is not None:
            if child.poll() is None:
                print("(waiting for the DETR half)", flush=True)
            code = child.wait()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                print(f.read(), end="", flush=True)
            if code != 0:
                raise BertDetrError(f"the DETR half stopped with exit status {code} (its output is above, "
                                    f"and in {log_path})")
        elif "detr" in halves:
            set_num_threads(detr_threads)
            run_detr(os.path.join(args.out, "detr"), args.detr_epochs, args.detr_images, args.seed,
                     detr_threads, args.progress)
    finally:
        if child is not None and child.poll() is None:  # interrupted or failed: stop the DETR half too
            child.terminate()
            child.wait()
    if not args.side_process:
        print(f"demo done in {time.perf_counter() - t0:.0f}s; outputs in {args.out}/")
    return 0


def _start_detr_process(args: argparse.Namespace, threads: int, log_path: str):
    """``bertdetr demo --only detr`` with ``threads`` threads in a child process, its output to
    ``log_path`` (no progress bars there)."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.Popen(_detr_process_command(args, threads), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)


def _detr_process_command(args: argparse.Namespace, threads: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "bertdetr.cli", "demo", "--only", "detr", "--out", args.out,
            "--detr-epochs", str(args.detr_epochs), "--detr-images", str(args.detr_images),
            "--seed", str(args.seed), "--threads", str(threads), "--no-progress", "--side-process"]


def _split_documents(path: str, out_dir: str, every: int = 8) -> tuple[str, str]:
    """Every ``every``-th document (chapter) is held out for evaluation."""
    with open(path, encoding="utf-8") as f:
        docs = [d.strip() for d in f.read().split("\n\n") if d.strip()]
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    held = [d for i, d in enumerate(docs) if i % every == every - 1]
    paths = (os.path.join(out_dir, "train.txt"), os.path.join(out_dir, "heldout.txt"))
    for p, part in zip(paths, (train, held)):
        with open(p, "w", encoding="utf-8") as f:
            f.write("\n\n".join(part) + "\n")
    return paths


PRECISION = {True: "bf16 autocast (this CPU multiplies bf16)", False: "fp32"}
"""How the demo's [3] line says the BERT trains (``cpu_has_fast_bf16``)."""


def run_bert(out: str, steps: int, seed: int, threads: int | None = None, progress: bool = True) -> dict:
    from bertdetr.bert.inference import load_model
    from bertdetr.bert.model import BertConfig
    from bertdetr.bert.pretraining.pretrain import PretrainConfig, pretrain
    from bertdetr.bert.pretraining.make_data import make_pretraining_data
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig, describe_example
    from bertdetr.bert.data.records import iter_examples
    from bertdetr.bert.data.tokenization import FullTokenizer
    from bertdetr.bert.data.vocab import VocabConfig, build_vocab
    from bertdetr.training.precision import cpu_has_fast_bf16
    import torch

    os.makedirs(out, exist_ok=True)
    print("== BERT: pretraining on bundled public-domain books ==")
    train_txt, held_txt = _split_documents(bundled_books(), out)
    vocab_file = os.path.join(out, "vocab.txt")
    t = time.perf_counter()
    tokens = build_vocab([train_txt], vocab_file, VocabConfig(vocab_size=3000, num_unused=10))
    print(f"[1] vocab: {len(tokens)} WordPiece entries learned from the books -> {vocab_file} "
          f"({time.perf_counter() - t:.1f}s)   # bertdetr bert build-vocab")

    t = time.perf_counter()
    data_cfg = PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=5, random_seed=seed)
    train_rec, held_rec = os.path.join(out, "train.tfrecord"), os.path.join(out, "heldout.tfrecord")
    s = make_pretraining_data([train_txt], train_rec, vocab_file, data_cfg)
    h = make_pretraining_data([held_txt], held_rec, vocab_file, PretrainingDataConfig(
        max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1, random_seed=seed + 1))
    print(f"[2] pretraining data: {s.documents} chapters, {s.tokens} tokens -> {s.instances} training "
          f"instances; {h.documents} held-out chapters -> {h.instances} instances "
          f"({time.perf_counter() - t:.1f}s)   # bertdetr bert make-data")
    tokenizer = FullTokenizer(vocab_file)
    words = describe_example(next(iter_examples(train_rec)), tokenizer.inv_vocab)
    print("    one instance: " + " ".join(words["tokens"]))
    print("    its masked targets: " + ", ".join(f"{pos}:{token}" for pos, token in words["masked"]))

    model = BertConfig(vocab_size=len(tokens), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=512, max_position_embeddings=64)
    # bf16 autocast where the CPU multiplies bf16 in hardware: 60-63 CPU s instead of 77 for the
    # 1000 steps, the same figures (seeds 0-2, held-out masked-LM 0.116-0.123); fp32 elsewhere, and
    # on a GPU (the demo's tiny model gains nothing there, and older GPUs lack bf16)
    bf16 = cpu_has_fast_bf16() and not torch.cuda.is_available()
    # lr 5e-4: at 1e-3 this tiny BERT sometimes stalls at the unigram solution (masked-LM loss flat at
    # about 6, its fine-tuning at chance: seeds 0 and 2 with the vocabulary build-vocab makes since it
    # keeps every character); at 5e-4 seeds 0-3 all learn (held-out masked-LM 0.109-0.116)
    config = PretrainConfig(input_files=[train_rec], output_dir=os.path.join(out, "run"), model=model,
                            vocab_file=vocab_file, eval_files=[held_rec], batch_size=32, num_train_steps=steps,
                            num_warmup_steps=max(1, steps // 10), learning_rate=5e-4, seed=seed,
                            save_every=max(steps // 2, 1), log_every=max(1, min(50, steps // 10)),
                            num_threads=threads, progress=progress, bf16=bf16,
                            overwrite=True)  # a demo run again replaces its own outputs
    t = time.perf_counter()
    print(f"[3] pretraining a tiny BERT (2 layers, hidden 128) for {steps} steps of 32 sequences, "
          f"{PRECISION[bf16]}   # bertdetr bert pretrain{' --bf16' if bf16 else ''}")
    summary = pretrain(config)
    m = summary["eval"]
    print(f"    done in {time.perf_counter() - t:.0f}s; loss curve: {os.path.join(config.output_dir, 'loss_curves.png')}")
    print(f"[4] held-out chapters ({m['eval_sequences']} sequences):")
    print(f"    masked-LM accuracy {m['masked_lm_accuracy']:.3f}   vs   frequency baseline "
          f"{m['masked_lm_frequency_baseline']:.3f} (always the most common masked token)")
    print(f"    next-sentence accuracy {m['next_sentence_accuracy']:.3f}   vs   0.5 by chance")
    bert, tok = load_model(summary["export"])
    quiz = show_fill_mask_quiz(bert, tok, held_txt, train_txt, summary["export"], seed)
    m = {**m, "fill_mask_top1": quiz.rate(1), "fill_mask_top5": quiz.rate(5)}
    return m


QUIZ_SENTENCES = 200
"""Held-out sentences of the demo's fill-mask quiz (``bertdetr.bert.quiz``)."""


def show_fill_mask_quiz(bert, tok, held_txt: str, train_txt: str, model_dir: str, seed: int, shown: int = 5):
    """Step [5]: one word hidden in each of ``QUIZ_SENTENCES`` sentences drawn at random (seeded)
    from the held-out chapters; prints the rate the hidden word is guessed, against always
    guessing the most common words, and the first ``shown`` sentences of the draw (as drawn, not
    chosen) with the hidden word beside the guesses. Returns the ``QuizResult``."""
    from bertdetr.bert.quiz import fill_mask_quiz, frequency_guess_rate, held_out_sentences

    quiz = fill_mask_quiz(bert, tok, held_out_sentences(held_txt), QUIZ_SENTENCES, seed)
    base, common = frequency_guess_rate(quiz, tok, train_txt)
    print(f"[5] fill-mask: one word hidden in each of {QUIZ_SENTENCES} sentences drawn at random from the "
          f"held-out chapters   # bertdetr bert fill-mask --model {model_dir} \"...\"")
    print(f"    (a word that is one WordPiece, {quiz.coverage:.0%} of their words; guesses among the vocabulary's words)")
    print(f"    hidden word among the top 5 guesses: {quiz.rate(5):.3f} (first guess: {quiz.rate(1):.3f})   vs   "
          f"always guessing the 5 most common words ({', '.join(common)}): {base:.3f}")
    for item in quiz.items[:shown]:
        print(f"    {item.text}\n      hidden: {item.word!r} -> "
              + "  ".join(f"{w} {p:.2f}" for w, p in zip(item.guesses, item.probs)))
    return quiz


# The bundled books in corpus order, with their number of documents (pd_books.SOURCES.md).
BOOKS = (("alice", 12), ("holmes", 4), ("grimm", 14), ("oz", 11))


def make_book_task(out_dir: str, seed: int, per_book_train: int = 250, per_book_test: int = 60,
                   every: int = 8, min_words: int = 8) -> tuple[str, int, int]:
    """A small classification task from the bundled books: which book is a sentence from?

    ``train.tsv`` takes sentences of the pretraining chapters, ``dev.tsv`` sentences of the
    held-out chapters (``_split_documents``'s every ``every``-th: one or more of each book), so the
    test is on chapters neither pretraining nor fine-tuning saw. Sentences of at least
    ``min_words`` words, the same number from each book (chance is 1 in 4).
    Returns (data dir, training examples, test examples)."""
    import random

    with open(bundled_books(), encoding="utf-8") as f:
        docs = [d.strip() for d in f.read().split("\n\n") if d.strip()]
    if len(docs) != sum(n for _, n in BOOKS):
        raise RuntimeError(f"the bundled books have {len(docs)} documents, BOOKS lists {sum(n for _, n in BOOKS)}")
    labels = [book for book, n in BOOKS for _ in range(n)]
    pools: dict[tuple[str, bool], list[str]] = {}
    for i, (doc, book) in enumerate(zip(docs, labels)):
        held = i % every == every - 1
        for line in doc.splitlines():
            line = " ".join(line.split())  # no tabs in a TSV field
            if len(line.split()) >= min_words:
                pools.setdefault((book, held), []).append(line)
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    counts = []
    for name, held, per_book in (("train", False, per_book_train), ("dev", True, per_book_test)):
        n = min([per_book] + [len(pools[(book, held)]) for book, _ in BOOKS])
        rows = [(s, book) for book, _ in BOOKS for s in rng.sample(pools[(book, held)], n)]
        rng.shuffle(rows)
        with open(os.path.join(out_dir, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            f.writelines(f"{s}\t{book}\n" for s, book in rows)
        counts.append(len(rows))
    return out_dir, counts[0], counts[1]


def run_bert_finetune(out: str, model_dir: str, seed: int, epochs: float = 3.0, learning_rate: float = 1e-4,
                      threads: int | None = None) -> dict:
    """Pretraining pays: fine-tune the pretrained tiny BERT on ``make_book_task`` and, with the same
    recipe, the same model from random weights; print both held-out accuracies. ``threads``: the
    CPU threads (None: the CPUs free at start), the BERT half's.

    Google's recipe (3 epochs, batch 32, warmup 10%) with lr 1e-4, from the grid Google gives for
    its small BERTs (3e-4, 1e-4, 5e-5, 3e-5). About 12 s on one thread (two runs of 93 steps).
    Measured with the demo's model (1000 steps, masked-LM accuracy 0.127), fine-tuning seeds
    0 / 1 / 2, held-out accuracy pretrained against random weights: at lr 1e-4 0.505 / 0.565 / 0.537
    against 0.403 / 0.472 / 0.398 (the gap 0.09-0.14 for every seed); at 2e-4 0.514 / 0.556 / 0.583
    against 0.537 / 0.537 / 0.468; at 5e-4 0.574 / 0.565 / 0.505 against 0.556 / 0.542 / 0.449. A
    model from random weights needs the larger rates; at those the tiny model's pretraining is
    worth a few points and the seed can outweigh it."""
    from bertdetr.bert.finetuning.classifier import ClassifierConfig, run_classifier

    t = time.perf_counter()
    data, n_train, n_test = make_book_task(os.path.join(out, "data"), seed)
    common = dict(task_name="tsv", data_dir=data, max_seq_length=64, do_train=True, do_eval=True,
                  train_batch_size=32, num_train_epochs=epochs, learning_rate=learning_rate, seed=seed,
                  save_checkpoints_steps=10**6, keep_checkpoint_max=1, progress=False, num_threads=threads,
                  overwrite=True)  # a demo run again replaces its own outputs
    print(f"[5b] fine-tuning to tell which book a sentence is from ({n_train} training sentences of 4 books; "
          f"{n_test} test sentences of held-out chapters)   # bertdetr bert classify --task-name tsv "
          f"--data-dir {data} --init-checkpoint {model_dir} --do-train --do-eval")
    results = {}
    for name, init in (("pretrained", dict(init_checkpoint=model_dir)),
                       ("random", dict(bert_config_file=os.path.join(model_dir, "config.json"),
                                       vocab_file=os.path.join(model_dir, "vocab.txt")))):
        summary = run_classifier(ClassifierConfig(output_dir=os.path.join(out, name), **common, **init))
        results[name] = summary["eval"]["eval_accuracy"]
    print(f"    held-out accuracy: pretrained {results['pretrained']:.3f}   vs   from random weights "
          f"{results['random']:.3f}   (chance 0.250; {time.perf_counter() - t:.0f}s)")
    return results


def make_demo_shapes(data: str, num_images: int, seed: int) -> tuple[int, int]:
    """The demo's synthetic COCO dataset under ``data``: (training images, validation images).

    Small images (80-128 px) with 1-3 shapes of 30-60% of the shorter side, each class in its own
    hue (``ShapesConfig.class_colors``). A backbone trained from scratch learns where things are
    and what colour they are in a few hundred iterations, but shape alone takes it thousands
    (measured: a plain CNN classifying single random-colour shapes on plain backgrounds stays at
    chance, cross-entropy 1.39, for 1000 iterations of 8 images; DETR's class loss sits at its
    prior for 800 iterations with random colours, and is learned within them with class hues,
    AP50 0.02 -> 0.25). On a stride-32 feature map a smaller shape covers less than a cell.
    """
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes

    num_val = max(20, num_images // 6)
    for split, n, s in (("train", num_images, seed), ("val", num_val, seed + 1)):
        make_shapes(data, split, ShapesConfig(num_images=n, min_size=80, max_size=128, max_objects=3,
                                              min_object=0.3, max_object=0.6, seed=s, class_colors=True))
    return num_images, num_val


def detr_demo_setup(epochs: int, seed: int) -> dict:
    """The demo's ``bertdetr detr train`` config (paths relative to the config file's folder:
    ``shapes/`` from ``make_demo_shapes``, outputs to ``run/``), also used by
    ``bench/bench_detr_shapes.py`` for the longer run.

    Trained from scratch in a few CPU minutes, so not DETR's recipe for a pretrained ResNet-50: a
    ResNet-18 of a quarter width (base_channels 16, ~7x cheaper) with ordinary trainable
    BatchNorm (frozen statistics of a random backbone mean nothing; at lr 1e-3 they diverge), its
    last stage dilated (DETR's DC5: features at stride 16, a 7x7 map at 112 pixels instead of 4x4),
    a 64-wide 2+2-layer transformer without dropout, 5 queries for at most 3 objects, and small
    images. The class loss weighs 5 instead of DETR's 1: with a backbone that starts from nothing,
    the box losses (L1 x5, GIoU x2) otherwise dominate the gradients of every shared layer and the
    class loss sits at its prior for thousands of iterations (measured: with the box losses off,
    the class loss falls within 200 iterations; with them at DETR's weights, not in 2000). A
    pretrained backbone already separates the classes, which is why DETR's 1/5/2 works there.
    lr 4e-4 for all (DETR: 1e-4, backbone 1e-5): measured on the demo's data after 800 iterations,
    AP50 0.27 at 4e-4, 0.24 at 2e-4, 0.09 at 1e-3.

    What makes the drawn boxes believable (precision and recall at score 0.5, IoU 0.5, each
    object matched once, of validation images predicted two at a time; 1200 iterations unless
    said; BENCHMARKS.md has every run): with 10 queries and DETR's no-object weight 0.1, most
    queries fire and an object gets 2.3 boxes on average (0.26 / 0.63); 4 queries, 0.33 / 0.55;
    no-object weight 1 with 4 queries, 0.55 / 0.45 (a query left over is taught "nothing here" as
    firmly as a matched one is taught its class: DETR's 0.1 balances 100 queries against a few
    objects, not 5); the dilated last stage, 0.64 / 0.49; 5 queries, no-object weight 0.5, 1600
    iterations with the lr dropped after 1200, 0.64 / 0.70; 2400 with the drop after 1800 (the
    demo), 0.79 / 0.86. Without the random crop, worse (0.26 / 0.47); smaller images (64-96 px)
    take 0.7x the CPU time per iteration but give less (2400 iterations: 0.66 / 0.78).
    ``detr predict`` runs one unpadded image at a time, which this model, trained on padded
    batches, does a little worse: 0.77 / 0.84 at score 0.5, 0.80 / 0.83 at the demo's 0.6
    (``DRAW_THRESHOLD``), 0.83 / 0.80 at 0.7.
    """
    dims = {"embed_dims": 64, "feedforward_channels": 256, "num_heads": 4, "dropout": 0.0, "ffn_drop": 0.0}
    return {
        "data": {"train_ann": "shapes/train.json", "train_images": "shapes/images", "val_ann": "shapes/val.json",
                 "val_images": "shapes/images", "train_scales": [96, 112, 128], "max_size": 192,
                 "crop_resize": [112], "crop_size": [80, 112], "test_size": 112},
        "model": {"preset": "r18", "num_queries": 5,
                  "backbone": {"base_channels": 16, "norm": "batch", "frozen_stages": -1, "dilation": True},
                  "encoder": {"num_layers": 2, **dims}, "decoder": {"num_layers": 2, **dims},
                  "positional_encoding": {"num_feats": 32},
                  "bbox_head": {"loss_cls_weight": 5.0, "bg_cls_weight": 0.5}},
        "train": {"output_dir": "run", "epochs": epochs, "batch_size": 8, "num_workers": 0, "lr": 4e-4,
                  "backbone_lr": 4e-4, "lr_drop": [max(1, round(epochs * 0.75))], "eval_every": epochs,
                  "save_every": epochs,
                  "log_every": 10, "seed": seed, "overwrite": True},
    }


DRAW_THRESHOLD = 0.6
"""Score from which the demo draws a detection and counts it in its precision and recall."""


def run_detr(out: str, epochs: int, num_images: int, seed: int, threads: int | None = None,
             progress: bool = True) -> dict:
    import torch

    from bertdetr.detr.data.coco import load_coco
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.predict import predict_images
    from bertdetr.detr.evaluate import evaluate_detr, precision_recall
    from bertdetr.detr.train import train_detr
    from bertdetr.detr.train_config import load_train_setup

    os.makedirs(out, exist_ok=True)
    print("== DETR: detection on synthetic shapes ==")
    t = time.perf_counter()
    data = os.path.join(out, "shapes")
    n_train, n_val = make_demo_shapes(data, num_images, seed)
    print(f"[6] synthetic COCO dataset: {n_train} training and {n_val} validation images "
          f"of circles, squares, triangles, crosses (each class its own hue) -> {data} ({time.perf_counter() - t:.1f}s)"
          f"   # bertdetr detr make-shapes")
    cfg_path = os.path.join(out, "detr_demo.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(detr_demo_setup(epochs, seed), f, indent=1)
    s = load_train_setup(cfg_path, num_threads=threads, progress=progress)  # this run's, not the file's
    val = load_coco(s.data.val_ann, s.data.val_images)
    torch.manual_seed(seed)
    untrained = build_detr(s.model.with_num_classes(val.num_classes))
    before = evaluate_detr(untrained, val, s.data.val_ann, s.data.test_size, s.data.max_size,
                           s.model.test_cfg.max_per_img, torch.device("cpu")).metrics
    t = time.perf_counter()
    print(f"[7] training a tiny DETR from scratch (quarter-width ResNet-18, last stage dilated, 2+2 transformer "
          f"layers of width 64, {s.model.num_queries} queries) for {epochs} epochs of {n_train // 8} batches   "
          f"# bertdetr detr train {cfg_path}")
    summary = train_detr(s)
    after = summary["metrics"]
    print(f"    done in {time.perf_counter() - t:.0f}s; loss curves: {os.path.join(s.train.output_dir, 'loss_curves.png')}")
    print("[8] COCO mAP on the validation images   # bertdetr detr eval")
    print(f"    trained:   AP {after['AP']:.3f}  AP50 {after['AP50']:.3f}  AR100 {after['AR100']:.3f}")
    print(f"    untrained: AP {before['AP']:.3f}  AP50 {before['AP50']:.3f}  AR100 {before['AR100']:.3f}")
    print("    (AP averages IoU thresholds 0.5 to 0.95; AP50 counts a box as found at IoU >= 0.5. For real images, "
          "start from converted weights: bertdetr detr convert, then train with --init-checkpoint)")
    # as a user would: the exported model at the test scale recorded with it, on every validation image
    images = [os.path.join(data, "images", im["file_name"]) for im in val.images]
    predictions = os.path.join(out, "predictions")
    pictures = predict_images(summary["export"], images, predictions, threshold=DRAW_THRESHOLD)
    with open(os.path.join(predictions, "results.json"), encoding="utf-8") as f:
        pr = precision_recall(s.data.val_ann, json.load(f), DRAW_THRESHOLD)
    print(f"[9] predictions on the {len(images)} validation images, drawn: {', '.join(pictures[:3])}, ...   "
          f"# bertdetr detr predict --checkpoint {summary['export']} {os.path.join(data, 'images', 'val_*')} "
          f"--out {predictions} --threshold {DRAW_THRESHOLD:g} --ann {s.data.val_ann}")
    print("    " + pr.describe())
    return {**after, "precision": pr.precision, "recall": pr.recall}
