"""CPU trainers with freed memory kept between steps (``training.host_memory``) against glibc's
default, side by side, the same command run after run.

    python bench/bench_host_memory.py [--runs 3] [--jobs ner pretrain]

Jobs (each a process, as users run them, 2 threads):

- ``ner``: ``bert ner --crf``, one epoch of ``bench/bench_ner_crf_trainer.py``'s task (the bundled
  CLUENER-layout training file copied 20 times, 8060 sentences; a random L4 H256 BERT over the
  bundled Chinese vocabulary; CLUENER's settings, batches of 24);
- ``pretrain``: ``bert pretrain --model-size medium`` (L8 H512), 12 steps of 32 x 128 on make-data
  records of the bundled books;
- ``detr``: ``detr train`` of the R18 preset, one epoch of 40 JPEGs of synthetic shapes (240-320
  pixels, ``bench_trainers.make_jpeg_shapes``) at official DETR's augmentation scaled to them
  (scales 256-320, longer side at most 427), batches of 2, no workers;
- ``predict``: ``detr predict`` (an inference command: ``devices.inference_device``) of a random
  R50 folder over 8 photos of 1600x1200 (``bench_detr_predict.make_photos``), results only; its
  rate is photos over the command's wall time (the model's loading included).

Each run counts its minor page faults and system CPU seconds (``getrusage`` of the child) and reads
the trainer's logged sequences (DETR: images) per second (the mean of its logged rows but the
first) and its CPU seconds (user + system). "kept" is this checkout as users run it; "default" the same with glibc's own behaviour: a
``MALLOC_ARENA_MAX`` at glibc's default (8 per core: nothing changes) marks the allocator as the
user's, so the trainer leaves it alone. The two alternate, ``--runs`` times each; the spread is the point (glibc's default
is a matter of a run's first allocations).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_ner_crf_trainer import make_data, make_model  # noqa: E402
from bench_trainers import make_jpeg_shapes  # noqa: E402

PHOTOS = 8
"""Photos of the ``predict`` job."""
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")
BOOKS = os.path.join(ROOT, "src", "bertdetr", "data", "pd_books.txt")


def bertdetr(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from bertdetr.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def prepare(work: str, jobs: list[str]) -> dict[str, list[str]]:
    """Each job's command (its data made in ``work``); its run folder is ``work/run``."""
    out, commands = os.path.join(work, "run"), {}
    common = ["--output-dir", out, "--overwrite", "--no-progress", "--device", "cpu", "--num-threads", "2"]
    if "ner" in jobs:
        model, data = os.path.join(work, "ner_model"), os.path.join(work, "ner_data")
        make_model(model)
        make_data(data, 20)
        commands["ner"] = bertdetr("bert", "ner", "--data-dir", data, "--init-checkpoint", model, "--crf",
                                   "--max-seq-length", "128", "--train-batch-size", "24", "--learning-rate", "3e-5",
                                   "--crf-learning-rate", "1e-3", "--num-train-epochs", "1", "--do-train",
                                   "--save-checkpoints-steps", "1000000", *common)
    if "pretrain" in jobs:
        records = os.path.join(work, "books.tfrecord")
        subprocess.run(bertdetr("bert", "make-data", "--input-file", BOOKS, "--output-file", records, "--vocab-file",
                                VOCAB, "--max-seq-length", "128", "--dupe-factor", "1"), check=True,
                       stdout=subprocess.DEVNULL, env=environment(False))
        commands["pretrain"] = bertdetr("bert", "pretrain", "--input-file", records, "--model-size", "medium",
                                        "--vocab-file", VOCAB, "--batch-size", "32", "--num-train-steps", "12",
                                        "--num-warmup-steps", "2", "--log-every", "2", "--save-every", "100000",
                                        *common)
    if "detr" in jobs:
        coco = os.path.join(work, "coco")
        make_jpeg_shapes(coco, 40, (240, 320))
        config = {"data": {"train_ann": os.path.join(coco, "train.json"), "train_images": os.path.join(coco, "images"),
                           "train_scales": [256, 288, 320], "max_size": 427, "crop_resize": [256, 288, 320],
                           "crop_size": [192, 256], "test_size": 320},
                  "model": {"preset": "r18"},
                  "train": {"output_dir": out, "epochs": 1, "batch_size": 2, "num_workers": 0, "log_every": 2,
                            "progress": False, "device": "cpu", "num_threads": 2, "save_every": 100,
                            "eval_every": 100}}
        with open(os.path.join(work, "detr.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        commands["detr"] = bertdetr("detr", "train", os.path.join(work, "detr.json"), "--overwrite")
    if "predict" in jobs:
        from bench_detr_pipeline import save_folders
        from bench_detr_predict import make_photos

        folder = save_folders("r50", work)[0]
        photos = make_photos(os.path.join(work, "photos"), PHOTOS)
        commands["predict"] = bertdetr("detr", "predict", "--checkpoint", folder, *photos, "--out", out,
                                       "--no-save-vis", "--device", "cpu", "--no-progress")
    return commands


def environment(default: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.path.join(ROOT, "src")
    if default:  # glibc's own default arena count: marks the settings as the user's, changes nothing
        env["MALLOC_ARENA_MAX"] = str(8 * (os.cpu_count() or 1))
    return env


def run_once(command: list[str], run: str, default: bool) -> dict[str, float]:
    shutil.rmtree(run, ignore_errors=True)
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(default))
    after, seconds = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
    if os.path.exists(os.path.join(run, "scalars.csv")):
        with open(os.path.join(run, "scalars.csv"), encoding="utf-8") as f:
            rates = [float(r["value"]) for r in csv.DictReader(f) if r["name"] in ("sequences_per_s", "images_per_s")]
        rate = statistics.mean(rates[1:])
    else:  # detr predict: photos over the command's wall time
        rate = PHOTOS / seconds
    return {"faults": after.ru_minflt - before.ru_minflt, "sys": after.ru_stime - before.ru_stime,
            "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, "rate": rate}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", nargs="+", default=["ner", "pretrain"], choices=["ner", "pretrain", "detr", "predict"])
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench_host_memory_")
    try:
        commands = prepare(work, args.jobs)
        for job, command in commands.items():
            results: dict[str, list[dict]] = {"default": [], "kept": []}
            for _ in range(args.runs):
                for mode in results:
                    r = run_once(command, os.path.join(work, "run"), mode == "default")
                    results[mode].append(r)
                    print(f"{job} {mode:8} {r['faults'] / 1e6:6.2f} M faults  sys {r['sys']:5.2f} s  "
                          f"cpu {r['cpu']:6.1f} s  {r['rate']:7.2f} per s", flush=True)
            print(f"{job}, {args.runs} runs each: page faults (millions), system CPU s, CPU s, sequences (images) "
                  "per s: median [range]")
            for mode, rows in results.items():
                cells = []
                for key, scale, digits in (("faults", 1e6, 2), ("sys", 1, 2), ("cpu", 1, 1), ("rate", 1, 2)):
                    values = [r[key] / scale for r in rows]
                    cells.append(f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-"
                                 f"{max(values):.{digits}f}]")
                print(f"  {mode:8} " + "   ".join(cells))
            ratio = statistics.median(r["rate"] for r in results["kept"]) / \
                statistics.median(r["rate"] for r in results["default"])
            cpu = statistics.median(r["cpu"] for r in results["default"]) / \
                statistics.median(r["cpu"] for r in results["kept"])
            print(f"  kept / default, median rate: {ratio:.2f}x; CPU seconds default / kept: {cpu:.2f}x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
