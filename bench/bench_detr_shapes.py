"""DETR on synthetic shapes, trained longer than the demo: COCO mAP against epochs.

The demo's recipe (``bertdetr.demo.detr_demo_setup``: a quarter-width ResNet-18 from scratch with
trainable BatchNorm and a dilated last stage, a 64-wide 2+2-layer transformer, 5 queries) on a shapes dataset from
``make-shapes``, evaluated on the validation split every ``--eval-every`` epochs. Writes
``<out>/<name>/curve.json`` (epoch, iteration, AP, AP50, AP75, AR100 at each evaluation, and the
precision and recall of the demo's pictures: detections scoring >= ``--threshold`` (default the
demo's ``DRAW_THRESHOLD``), each object matched once at IoU 0.5, from the checkpoint of that
epoch, one image at a time as ``detr predict``) and ``curve.png``;
``--plot A B ...`` draws several runs' curves into one picture.

    python bench/bench_detr_shapes.py --out /tmp/shapes --num-images 2000 --epochs 40 --eval-every 4
    python bench/bench_detr_shapes.py --device cuda --epochs 100 ...      # on a GPU
    python bench/bench_detr_shapes.py --name lr1e-3 --set train.lr=1e-3 --set train.backbone_lr=1e-3
    python bench/bench_detr_shapes.py --plot /tmp/shapes/demo /tmp/shapes/lr1e-3 --plot-out both.png

The dataset is made once per (``--num-images``, ``--seed``) under ``<out>/shapes_<n>_<seed>`` and
shared by runs. ``--set SECTION.KEY=VALUE`` (VALUE as JSON, else a string) edits the recipe.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time


def set_key(setup: dict, assignment: str) -> None:
    key, _, raw = assignment.partition("=")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *path, last = key.split(".")
    node = setup
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def read_curve(run_dir: str, steps_per_epoch: float) -> list[dict]:
    """Validation metrics logged by ``train_detr`` (scalars.csv, long format), one row per evaluation."""
    by_step: dict[int, dict] = {}
    with open(os.path.join(run_dir, "scalars.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["name"].startswith("eval_"):
                by_step.setdefault(int(row["step"]), {})[row["name"][5:]] = float(row["value"])
    return [{"iteration": step, "epoch": round(step / steps_per_epoch, 2), **m} for step, m in sorted(by_step.items())]


def plot(curves: dict[str, list[dict]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, rows in curves.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["AP"] for r in rows], marker="o", label=name)
        axes[1].plot(epochs, [r["AP50"] for r in rows], marker="o", label=name)
        if all("precision" in r for r in rows):
            axes[2].plot(epochs, [r["precision"] for r in rows], marker="o", label=f"{name} precision")
            axes[2].plot(epochs, [r["recall"] for r in rows], marker="s", linestyle="--", label=f"{name} recall")
    for ax, metric in zip(axes, ("COCO AP (0.5:0.95)", "AP50", "precision / recall of the drawn boxes")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    plt.close(fig)


def add_precision_recall(curve: list[dict], run_dir: str, setup, threshold: float) -> None:
    """The drawn pictures' precision and recall (``evaluate.precision_recall``) of each evaluation's
    checkpoint, added to its ``curve`` row; the checkpoints are kept for this (``keep_last`` 0)."""
    import glob

    import torch

    from bertdetr.detr.data.coco import load_coco
    from bertdetr.detr.evaluate import precision_recall, predict_dataset
    from bertdetr.detr.model import build_detr

    val = load_coco(setup.data.val_ann, setup.data.val_images)
    model = build_detr(setup.model.with_num_classes(val.num_classes))
    by_iteration = {int(os.path.basename(p)[5:-3]): p for p in glob.glob(os.path.join(run_dir, "ckpt-*.pt"))}
    for row in curve:
        path = by_iteration.get(row["iteration"])
        if path is None:
            continue
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
        # one image at a time, unpadded, as detr predict runs the exported model
        results = predict_dataset(model, val, setup.data.test_size, setup.data.max_size,
                                  setup.model.test_cfg.max_per_img, torch.device("cpu"), batch_size=1)
        pr = precision_recall(setup.data.val_ann, results, threshold)
        row.update(precision=round(pr.precision, 4), recall=round(pr.recall, 4))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="shapes_bench")
    ap.add_argument("--name", default="demo")
    ap.add_argument("--num-images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--threshold", type=float, default=None,
                    help="score of the drawn boxes counted in precision and recall (default: the demo's)")
    ap.add_argument("--plot", nargs="+", metavar="RUN_DIR", help="only draw these runs' curve.json together")
    ap.add_argument("--plot-out", default="curves.png")
    args = ap.parse_args(argv)

    if args.plot:
        curves = {}
        for d in args.plot:
            with open(os.path.join(d, "curve.json")) as f:
                rec = json.load(f)
            curves[rec["name"]] = rec["curve"]
        plot(curves, args.plot_out, "DETR on synthetic shapes: validation mAP against epochs")
        print(f"wrote {args.plot_out}")
        return 0

    import torch

    from bertdetr.demo import DRAW_THRESHOLD, detr_demo_setup, make_demo_shapes
    from bertdetr.detr.train import train_detr
    from bertdetr.detr.train_config import load_train_setup

    if args.threads:
        torch.set_num_threads(args.threads)
    data = os.path.join(args.out, f"shapes_{args.num_images}_{args.seed}")
    if not os.path.exists(os.path.join(data, "val.json")):
        make_demo_shapes(data, args.num_images, args.seed)
    run_dir = os.path.join(args.out, args.name)
    os.makedirs(run_dir, exist_ok=True)
    setup = detr_demo_setup(args.epochs, args.seed)
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        setup["data"][key] = os.path.abspath(os.path.join(data, setup["data"][key].split("/", 1)[1]))
    setup["train"].update(output_dir=os.path.abspath(os.path.join(run_dir, "run")), eval_every=args.eval_every,
                          save_every=args.eval_every, keep_last=0, num_workers=args.num_workers, progress=False,
                          device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for assignment in args.set:
        set_key(setup, assignment)
    cfg_path = os.path.join(run_dir, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(setup, f, indent=1)
    s = load_train_setup(cfg_path)
    t0 = time.perf_counter()
    summary = train_detr(s)
    seconds = time.perf_counter() - t0
    steps_per_epoch = summary["iterations"] / max(summary["epoch"], 1)
    curve = read_curve(s.train.output_dir, steps_per_epoch)
    add_precision_recall(curve, s.train.output_dir, s, DRAW_THRESHOLD if args.threshold is None else args.threshold)
    where = torch.cuda.get_device_name() if s.train.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    record = {"name": args.name, "device": where, "torch": torch.__version__, "num_images": args.num_images,
              "epochs": args.epochs, "iterations": summary["iterations"], "seconds": round(seconds, 1),
              "set": args.set, "curve": curve}
    with open(os.path.join(run_dir, "curve.json"), "w") as f:
        json.dump(record, f, indent=1)
    plot({args.name: curve}, os.path.join(run_dir, "curve.png"), f"DETR on shapes ({args.name}, {where})")
    best = max(curve, key=lambda r: r["AP"]) if curve else {}
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))
    for r in curve:
        print(f"epoch {r['epoch']:6.1f}  it {r['iteration']:6d}  AP {r['AP']:.3f}  AP50 {r['AP50']:.3f}  "
              f"AR100 {r.get('AR100', float('nan')):.3f}  precision {r.get('precision', float('nan')):.3f}  "
              f"recall {r.get('recall', float('nan')):.3f}")
    print(f"best AP {best.get('AP', float('nan')):.3f} at epoch {best.get('epoch')}; {seconds:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
