"""The real trainers on a GPU, for ``bench/run_gpu.sh`` (issue 18 item 8): the data they train on,
transformers' step on the same records, and the figures read from the trainers' own logs.

    python bench/bench_trainers.py data OUT [--smoke]        # make-data records (128, 512), COCO-format JPEGs
    python bench/bench_trainers.py bert-figures RUN --model-size base --seq 128 --masked 20
    python bench/bench_trainers.py hf-bert RECORDS --model-size base --batch 256 --steps 60 [--compile]
    python bench/bench_trainers.py detr-figures RUN
    python bench/bench_trainers.py hf-detr CONFIG --steps 30   # transformers' DETR on detr train's batches
    python bench/bench_trainers.py classify-figures RUN      # bert classify's (or bert ner's) logged sequences/s
    python bench/bench_trainers.py bert-config SIZE PATH [--vocab-size N]   # a random-weights BERT's bert_config.json
    python bench/bench_trainers.py table OUT                 # run_gpu.sh's figures as a markdown table, with the goals

``bert-figures``: the median ``sequences_per_s`` that ``bert pretrain`` logged (the first two logged
rows dropped, compilation and warm-up, and those of the profiled steps: ``measured_rates``), the
per-step lines of its profile (``--profile-steps``: the device's busy share), and its MFU: model FLOPs per sequence as our model runs
them (``bert_flops.num_flops_per_sequence``: 2 per multiply-add, x3 for training; the last layer
and the MLM head at the masked positions only; padding counted as tokens) x sequences/s / the
GPU's dense bf16 peak (H100 SXM 989.4 TFLOP/s, PCIe 756; H200 989.4). ``hf-bert``: transformers'
``BertForPreTraining`` (sdpa attention) with torch's fused AdamW, bf16 autocast (and compiled with
``--compile``), stepped on batches of the same records from our loader, synchronised timing after
warm-up; its MFU counts the FLOPs it executes (every position through the whole model and the MLM
head: ``bench_bert_model.hf_train_flops_per_sequence``) and, for the ratio that matters, ours.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")
BOOKS = os.path.join(ROOT, "src", "bertdetr", "data", "pd_books.txt")


def make_data(out: str, smoke: bool) -> None:
    """Pretraining records at 128 and 512 (the bundled books, bert-base-uncased's vocabulary) and a
    COCO-format dataset of JPEGs at COCO's sizes (synthetic shapes, re-encoded as JPEG), the
    demo's book task for ``bert classify`` (``demo.make_book_task``) and CLUENER's layout for
    ``bert ner`` (the bundled files, train.json copied 20 times: 8060 sentences; once with ``smoke``)."""
    os.makedirs(out, exist_ok=True)
    # the pieces at once (the two make-data runs in their own processes): on a lent GPU this is
    # device time (30 s one after the other)
    jobs = []
    for seq, masked in ((128, 20), (512, 80)):
        target = os.path.join(out, f"books_{seq}.tfrecord")
        if not os.path.exists(target):
            jobs.append(subprocess.Popen(
                [sys.executable, "-m", "bertdetr.cli", "bert", "make-data", "--input-file", BOOKS,
                 "--output-file", target, "--vocab-file", VOCAB, "--max-seq-length", str(seq),
                 "--max-predictions-per-seq", str(masked), "--dupe-factor", "1" if smoke else "5", "--no-progress"]))
    if not os.path.exists(os.path.join(out, "book_task", "train.tsv")):
        from bertdetr.demo import make_book_task

        make_book_task(os.path.join(out, "book_task"), seed=0, per_book_train=50 if smoke else 250)
    if not os.path.exists(os.path.join(out, "cluener")):
        from bench_ner_crf_trainer import make_data as make_cluener_data

        make_cluener_data(os.path.join(out, "cluener"), 1 if smoke else 20)
    coco = os.path.join(out, "coco")
    if not os.path.exists(os.path.join(coco, "train.json")):
        make_jpeg_shapes(coco, 16 if smoke else 400, (48, 64) if smoke else (480, 640))
    if any(job.wait() != 0 for job in jobs):
        raise SystemExit("bench_trainers data: make-data failed")


def make_jpeg_shapes(out: str, n: int, sizes: tuple[int, int]) -> None:
    """``detr make-shapes`` at ``sizes`` (shorter, longer side range), its PNGs re-encoded as JPEGs
    (quality 90) and the annotation file pointed at them."""
    from PIL import Image

    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes

    path = make_shapes(out, "train", ShapesConfig(num_images=n, min_size=sizes[0], max_size=sizes[1], max_objects=6,
                                                   seed=0))
    with open(path, encoding="utf-8") as f:
        ann = json.load(f)
    for image in ann["images"]:
        png = os.path.join(out, "images", image["file_name"])
        image["file_name"] = image["file_name"][:-4] + ".jpg"
        Image.open(png).convert("RGB").save(os.path.join(out, "images", image["file_name"]), quality=90)
        os.remove(png)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(ann, f)


def logged(run: str, key: str) -> list[tuple[int, float]]:
    """A scalar's (step, value) rows in ``run/scalars.csv``, in step order."""
    with open(os.path.join(run, "scalars.csv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("name", r.get("tag")) == key]
    return [(int(r["step"]), float(r["value"])) for r in rows]


def measured_rates(run: str, key: str) -> list[float]:
    """The rates ``key`` a trainer logged in ``run`` that measure its plain steps: the first two rows
    dropped (compilation and warm-up), and the rows whose steps hold a profiled one (the run's
    ``profile_steps`` and the profiler's warm-up step before them: the profiler's own cost)."""
    window = profile_window(run)
    rows, previous = [], 0
    for step, value in logged(run, key):
        if not (window and previous < window[1] and step >= window[0] - 1):
            rows.append(value)
        previous = step
    return rows[2:]


def profile_window(run: str) -> list[int]:
    """The ``profile_steps`` recorded with ``run`` ([] when none)."""
    for name in ("train_config.json", "classify_config.json"):
        path = os.path.join(run, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            return config.get("profile_steps") or config.get("train", {}).get("profile_steps") or []
    return []


def profile_summary(run: str) -> dict:
    """The per-step lines of ``run``'s profile reports (``profile/*.txt``: wall time per step, the
    device's kernels and busy share, peak memory), for the figures' row; {} when it has none."""
    folder = os.path.join(run, "profile")
    if not os.path.isdir(folder):
        return {}
    summary = {}
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".txt")):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
        head = lines[1:lines.index("")] if "" in lines else lines[1:]  # (the table follows a blank line)
        summary[name[:-4]] = " | ".join(head)
    return {"profile": summary}


def peak_bf16_flops() -> float:
    """Dense bf16 peak of the first GPU (H100/H200 SXM 989.4 TFLOP/s, H100 PCIe 756; others: A100's 312)."""
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if "H100" in name or "H200" in name:
        return 756e12 if "PCIe" in name else 989.4e12
    return 312e12


def bert_config(model_size: str, vocab_size: int = 30522):
    from bertdetr.bert.pretraining.pretrain import model_preset

    return model_preset(model_size, vocab_size=vocab_size)


def bert_figures(args) -> None:
    from bert_flops import num_flops_per_sequence

    rates = measured_rates(args.run, "sequences_per_s")
    if not rates:
        raise SystemExit(f"{args.run}: fewer than 3 logged rows of sequences_per_s outside its profiled steps")
    rate = statistics.median(rates)
    flops = num_flops_per_sequence(bert_config(args.model_size), args.seq, args.masked)
    # (MFU to 4 significant digits: a tiny model's on a loaded CPU, the smoke run's, is under 1e-4)
    print(json.dumps({"run": args.run, "sequences_per_s": round(rate, 1), "logged_rows": len(rates),
                      "model_tflops_per_s": round(rate * flops / 1e12, 1), "mfu": float(f"{rate * flops / peak_bf16_flops():.4g}"),
                      "flops_per_sequence": flops, **profile_summary(args.run)}))


def rate_figures(run: str, key: str) -> None:
    """The median of ``key`` that a trainer logged in ``run`` (``measured_rates``)."""
    rates = measured_rates(run, key)
    if not rates:
        raise SystemExit(f"{run}: fewer than 3 logged rows of {key} outside its profiled steps")
    print(json.dumps({"run": run, key: round(statistics.median(rates), 2), "logged_rows": len(rates),
                      **profile_summary(run)}))


def write_bert_config(args) -> None:
    with open(args.path, "w", encoding="utf-8") as f:
        json.dump(bert_config(args.model_size, args.vocab_size).to_google_dict(), f, indent=1)


def timed_rate(step, warmup: int, steps: int, device) -> float:
    """Items per second of ``step`` (returning the items it took) over ``steps`` calls after
    ``warmup``, the GPU synchronised at both ends."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    items = sum(step() for _ in range(steps))
    sync()
    return items / (time.perf_counter() - t0)


def hf_bert(args) -> None:
    import torch
    import transformers
    from bench_bert_model import hf_inputs, hf_train_flops_per_sequence
    from bert_flops import num_flops_per_sequence

    from bertdetr.bert.pretraining.dataset import PretrainingStream, inspect_records

    device = torch.device(args.device)
    config = bert_config(args.model_size)
    shape = inspect_records([args.records])
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(transformers.BertConfig(**config.to_hf_dict(), attn_implementation="sdpa"))
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")
    net = torch.compile(model) if args.compile else model
    stream = PretrainingStream([args.records], args.batch, 0, shape, num_workers=args.num_workers)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.num_workers,
                                         pin_memory=device.type == "cuda")
    batches = iter(loader)

    def step():
        batch = next(batches)
        batch.setdefault("input_mask", torch.ones_like(batch["input_ids"]))  # (ours drops it when no row is padded)
        batch = {k: v.to(device, non_blocking=True) for k, v in hf_inputs(batch).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = net(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return args.batch

    rate = timed_rate(step, args.warmup, args.steps, device)
    T = shape.max_seq_length
    executed = hf_train_flops_per_sequence(config, T)
    useful = num_flops_per_sequence(config, T, shape.max_predictions_per_seq)
    peak = peak_bf16_flops()
    print(json.dumps({"impl": "transformers", "model_size": args.model_size, "seq": T, "batch": args.batch,
                      "compiled": args.compile, "sequences_per_s": round(rate, 1),
                      "mfu_executed": round(rate * executed / peak, 4), "mfu_ours_formula": round(rate * useful / peak, 4)}))


def hf_detr(args) -> None:
    """transformers' DETR stepped on ``detr train``'s batches of the same config (our loader: the
    same JPEGs, decode, augmentation and workers; boxes given as transformers takes them, cxcywh
    over each image's size), with ``detr train``'s optimizer settings (fused AdamW, backbone lr,
    clipping) and precision; synchronised timing after warm-up, images/s."""
    import torch
    from bench_detr import hf_detr_model

    from bertdetr.detr.boxes import box_xyxy_to_cxcywh
    from bertdetr.detr.data.coco import load_coco
    from bertdetr.detr.train import training_loader
    from bertdetr.detr.train_config import load_train_setup

    setup = load_train_setup(args.config)
    data, cfg = setup.data, setup.train
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    index = load_coco(data.train_ann, data.train_images)
    loader = training_loader(index, data, cfg, device)
    torch.manual_seed(cfg.seed)
    # DETR's training settings (dropout 0.1; the losses of every decoder layer, as detr train's)
    model = hf_detr_model(setup.model.backbone.depth, index.num_classes, auxiliary_loss=True).to(device).train()
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and "backbone" in n]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and "backbone" not in n]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.backbone_lr}, {"params": rest}], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, fused=device.type == "cuda")

    def batches():
        epoch = 0
        while True:
            yield from (b for b in loader.epoch(epoch) if b is not None)
            epoch += 1

    stream = batches()

    def step() -> int:
        batch = next(stream)
        labels = []
        for t in batch["targets"]:
            h, w = (float(v) for v in t["size"])
            boxes = box_xyxy_to_cxcywh(t["boxes"] / torch.tensor([w, h, w, h]))
            labels.append({"class_labels": t["labels"].to(device), "boxes": boxes.to(device)})
        pixel_mask = (~batch["masks"]).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = model(pixel_values=batch["images"], pixel_mask=pixel_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return len(labels)

    rate = timed_rate(step, args.warmup, args.steps, device)
    print(json.dumps({"impl": "transformers", "model": f"detr-r{setup.model.backbone.depth}", "batch": cfg.batch_size,
                      "bf16": cfg.bf16, "num_workers": cfg.num_workers, "images_per_s": round(rate, 2)}))


def read_rows(out: str, name: str) -> list[dict]:
    """The JSON rows of ``out/name`` (a figures file of ``run_gpu.sh``; [] when absent)."""
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def figures_table(out: str) -> str:
    """The figures of a ``run_gpu.sh`` folder as BENCHMARKS.md's table: ours against transformers
    on the same data, the ratio, and issue 18's goal for each (BERT 128: MFU >= 45%; BERT 512: >= 525
    sequences/s; DETR eager: >= 1.5x transformers and >= 100 images/s); then the profiles' heads."""
    lines = ["| run | ours | transformers | ours / transformers | goal (issue 18) |", "|---|---|---|---|---|"]
    bert = read_rows(out, "bert_trainer.jsonl")
    theirs = {(r["model_size"], r["seq"]): r for r in bert if r.get("impl") == "transformers"}
    profiles = []
    for r in (r for r in bert if "run" in r):
        size, seq, *mode = os.path.basename(r["run"]).split("-", 3)[1:]
        hf = theirs.get((size, int(seq)))
        ratio = f"{r['sequences_per_s'] / hf['sequences_per_s']:.2f}x" if hf else "-"
        goal = (f"MFU >= 45%: {'met' if r['mfu'] >= 0.45 else 'not met'}" if int(seq) == 128 else
                f">= 525 seq/s: {'met' if r['sequences_per_s'] >= 525 else 'not met'}")
        lines.append(f"| bert pretrain {size} {seq}{' ' + mode[0] if mode else ''} | {r['sequences_per_s']:.0f} seq/s, "
                     f"MFU {100 * r['mfu']:.1f}% | " + (f"{hf['sequences_per_s']:.0f} seq/s (MFU by our formula "
                     f"{100 * hf['mfu_ours_formula']:.1f}%)" if hf else "-") + f" | {ratio} | {goal} |")
        profiles += [(os.path.basename(r["run"]), k, v) for k, v in r.get("profile", {}).items()]
    detr = read_rows(out, "detr_trainer.jsonl")
    hf_detr = next((r for r in detr if r.get("impl") == "transformers"), None)
    for r in (r for r in detr if "run" in r):
        name = os.path.basename(r["run"])
        ratio = r["images_per_s"] / hf_detr["images_per_s"] if hf_detr else None
        goal = "-" if name.endswith("compiled") else (
            ">= 1.5x and >= 100 img/s: " + ("met" if ratio and ratio >= 1.5 and r["images_per_s"] >= 100 else "not met"))
        lines.append(f"| detr train {name[5:]} | {r['images_per_s']:.1f} img/s | "
                     + (f"{hf_detr['images_per_s']:.1f} img/s" if hf_detr else "-")
                     + f" | {f'{ratio:.2f}x' if ratio else '-'} | {goal} |")
        profiles += [(name, k, v) for k, v in r.get("profile", {}).items()]
    for r in read_rows(out, "finetune_trainer.jsonl"):
        name = os.path.basename(r["run"])
        lines.append(f"| bert {name.replace('-', ' ')} | {r['sequences_per_s']:.0f} seq/s | - | - | - |")
        profiles += [(name, k, v) for k, v in r.get("profile", {}).items()]
    lines += [""] + [f"- {run} (profile {steps}): {head}" for run, steps, head in profiles]
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, HERE)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("data")
    p.add_argument("out")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU check of the script)")
    p = sub.add_parser("bert-figures")
    p.add_argument("run")
    p.add_argument("--model-size", default="base")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--masked", type=int, default=20)
    for name in ("detr-figures", "classify-figures"):
        sub.add_parser(name).add_argument("run")
    sub.add_parser("table", help="a run_gpu.sh folder's figures as a markdown table").add_argument("out")
    p = sub.add_parser("bert-config")
    p.add_argument("model_size")
    p.add_argument("path")
    p.add_argument("--vocab-size", type=int, default=30522, help="bert-base-uncased's; the bundled Chinese one for bert ner")
    p = sub.add_parser("hf-bert")
    p.add_argument("records")
    p.add_argument("--model-size", default="base")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("hf-detr", help="transformers' DETR on the batches of a detr train config")
    p.add_argument("config", help="a detr train config file (its data, batch size, workers, lr, bf16, device)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    if args.what == "data":
        make_data(args.out, args.smoke)
    else:
        {"bert-figures": bert_figures, "hf-bert": hf_bert, "hf-detr": hf_detr, "bert-config": write_bert_config,
         "detr-figures": lambda a: rate_figures(a.run, "images_per_s"),
         "classify-figures": lambda a: rate_figures(a.run, "sequences_per_s"),
         "table": lambda a: print(figures_table(a.out))}[args.what](args)


if __name__ == "__main__":
    main()
