"""``bench/run_gpu.sh`` kept ready for a lent GPU: its every step (the data, both real trainers,
transformers' step on the same records, the figures read from the trainers' logs) run tiny on the
CPU (``SMOKE=1``), so the script a device session runs is known to work end to end."""

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_gpu_script_runs_end_to_end_tiny_on_the_cpu(tmp_path):
    env = {**os.environ, "SMOKE": "1"}
    done = subprocess.run(["bash", "bench/run_gpu.sh", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    bert = [json.loads(line) for line in (tmp_path / "bert_trainer.jsonl").read_text().splitlines()]
    ours = [row for row in bert if "run" in row]
    theirs = [row for row in bert if row.get("impl") == "transformers"]
    assert [os.path.basename(r["run"]) for r in ours] == ["bert-tiny-128", "bert-mini-512"]
    assert all(r["sequences_per_s"] > 0 and r["logged_rows"] >= 3 and 0 < r["mfu"] < 1 for r in ours)
    assert [(r["model_size"], r["seq"]) for r in theirs] == [("tiny", 128), ("mini", 512)]
    detr = json.loads((tmp_path / "detr_trainer.jsonl").read_text())
    assert detr["images_per_s"] > 0
    classify = [json.loads(line) for line in (tmp_path / "finetune_trainer.jsonl").read_text().splitlines()]
    assert [os.path.basename(r["run"]) for r in classify] == ["classify-eager", "classify-compiled"]
    assert all(r["sequences_per_s"] > 0 and r["logged_rows"] >= 3 for r in classify)
    images = json.loads((tmp_path / "data" / "coco" / "train.json").read_text())["images"]
    assert images and all(i["file_name"].endswith(".jpg") for i in images)


def test_a_spent_budget_skips_steps_and_says_so(tmp_path):
    """One command keeps to BUDGET seconds (a device call's limit): a step with under 30 s left is
    not started, and OUT/skipped.txt names it."""
    env = {**os.environ, "SMOKE": "1", "BUDGET": "0"}
    done = subprocess.run(["bash", "bench/run_gpu.sh", str(tmp_path), "bert"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert (tmp_path / "skipped.txt").read_text() == "skipped (budget of 0s spent): data\n"
    assert not (tmp_path / "data").exists()
