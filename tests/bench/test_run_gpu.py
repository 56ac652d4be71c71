"""``bench/run_gpu.sh`` kept ready for a lent GPU: its every step (the data, both real trainers,
transformers' step on the same records, the figures read from the trainers' logs) run tiny on the
CPU (``SMOKE=1``), so the script a device session runs is known to work end to end."""

import json
import os
import pathlib
import subprocess
import tarfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_gpu_script_runs_end_to_end_tiny_on_the_cpu(tmp_path):
    out, pack = tmp_path / "out", tmp_path / "back.tgz"
    env = {**os.environ, "SMOKE": "1", "PACK": str(pack)}
    done = subprocess.run(["bash", "bench/run_gpu.sh", str(out), "all"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    bert = [json.loads(line) for line in (out / "bert_trainer.jsonl").read_text().splitlines()]
    ours = [row for row in bert if "run" in row]
    theirs = [row for row in bert if row.get("impl") == "transformers"]
    assert [os.path.basename(r["run"]) for r in ours] == ["bert-tiny-128", "bert-mini-512"]
    assert all(r["sequences_per_s"] > 0 and r["logged_rows"] >= 3 and 0 < r["mfu"] < 1 for r in ours)
    # each trainer's last steps profiled (8-10, 7 warming the profiler up), their rows left out of its
    # figures (10 logged: 1-6, less the first two), their report's per-step lines in its row
    assert [r["logged_rows"] for r in ours] == [4, 4]
    assert all(list(r["profile"]) == ["steps-8-10"] and r["profile"]["steps-8-10"].startswith("wall time per step: ")
               and "---" not in r["profile"]["steps-8-10"] for r in ours)  # (the report's head, not its table)
    assert [(r["model_size"], r["seq"]) for r in theirs] == [("tiny", 128), ("mini", 512)]
    detr, hf_detr = [json.loads(line) for line in (out / "detr_trainer.jsonl").read_text().splitlines()]
    assert os.path.basename(detr["run"]) == "detr-r18" and detr["images_per_s"] > 0
    assert list(detr["profile"]) == ["steps-6-8"]  # 16 images, batches of 2
    assert hf_detr["impl"] == "transformers" and hf_detr["model"] == "detr-r18" and hf_detr["images_per_s"] > 0
    classify = [json.loads(line) for line in (out / "finetune_trainer.jsonl").read_text().splitlines()]
    assert [os.path.basename(r["run"]) for r in classify] == ["classify-eager", "classify-compiled", "ner-crf-eager"]
    assert all(r["sequences_per_s"] > 0 and r["logged_rows"] >= 3 for r in classify)
    assert list(classify[2]["profile"]) == ["steps-48-50"]  # bert ner: CLUENER's 403 sentences in batches of 8
    # the figures as BENCHMARKS.md's table, ours against transformers, each with its goal
    table = (out / "table.md").read_text().splitlines()
    assert table[2].startswith("| bert pretrain tiny 128 | ") and table[2].endswith(" | MFU >= 45%: not met |")
    assert table[3].startswith("| bert pretrain mini 512 | ") and table[3].endswith(" | >= 525 seq/s: not met |")
    assert table[4].startswith("| detr train r18 | ") and "| >= 1.5x and >= 100 img/s: not met |" in table[4]
    assert table[5].startswith("| bert classify eager | ") and table[6].startswith("| bert classify compiled | ")
    assert table[7].startswith("| bert ner crf eager | ")
    assert table[9].startswith("- bert-tiny-128 (profile steps-8-10): wall time per step: ")
    assert table[-1].startswith("- ner-crf-eager (profile steps-48-50): wall time per step: ")
    images = json.loads((out / "data" / "coco" / "train.json").read_text())["images"]
    assert images and all(i["file_name"].endswith(".jpg") for i in images)
    # what comes back from a device call: the figures, logs and scalars, not the data or weights
    with tarfile.open(pack) as tar:
        names = tar.getnames()
    assert {"./bert_trainer.jsonl", "./detr_trainer.jsonl", "./table.md", "./bert-tiny-128/scalars.csv",
            "./bert-tiny-128/profile/steps-8-10.txt"} <= set(names)
    assert not [n for n in names if n.startswith("./data") or n.endswith((".pt", ".safetensors", ".tfrecord", ".gz"))]
    # the profiles' traces in a pack of their own (a device call brings files of up to 16 MiB back)
    with tarfile.open(tmp_path / "back-traces.tgz") as tar:
        assert sorted(tar.getnames()) == ["./bert-mini-512/profile/steps-8-10.json.gz",
                                          "./bert-tiny-128/profile/steps-8-10.json.gz",
                                          "./detr-r18/profile/steps-6-8.json.gz",
                                          "./ner-crf-eager/profile/steps-48-50.json.gz"]


def test_a_spent_budget_skips_steps_and_says_so(tmp_path):
    """One command keeps to BUDGET seconds (a device call's limit): a step with under 30 s left is
    not started, and OUT/skipped.txt names it."""
    env = {**os.environ, "SMOKE": "1", "BUDGET": "0"}
    done = subprocess.run(["bash", "bench/run_gpu.sh", str(tmp_path), "bert"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert (tmp_path / "skipped.txt").read_text() == "skipped (budget of 0s spent): data\n"
    assert not (tmp_path / "data").exists()


def test_an_unknown_part_is_refused(tmp_path):
    done = subprocess.run(["bash", "bench/run_gpu.sh", str(tmp_path), "everything"], cwd=ROOT,
                          env={**os.environ, "SMOKE": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown part everything" in done.stderr


def test_the_figures_table_says_which_goals_are_met(tmp_path):
    """``bench_trainers.py table`` on figures as a GPU run would write them (made up here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_trainers", ROOT / "bench" / "bench_trainers.py")
    bench_trainers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_trainers)
    rows = {"bert_trainer.jsonl": [
        {"run": "o/bert-base-128", "sequences_per_s": 6500.0, "mfu": 0.4337, "profile": {"steps-82-84": "wall"}},
        {"run": "o/bert-large-512", "sequences_per_s": 500.0, "mfu": 0.50},
        {"impl": "transformers", "model_size": "base", "seq": 128, "sequences_per_s": 2600.0, "mfu_ours_formula": 0.17},
        {"run": "o/bert-base-128-reduce-overhead", "sequences_per_s": 7000.0, "mfu": 0.467}],
        "detr_trainer.jsonl": [{"run": "o/detr-r50", "images_per_s": 120.0},
                               {"impl": "transformers", "model": "detr-r50", "images_per_s": 75.0},
                               {"run": "o/detr-r50-compiled", "images_per_s": 150.0}]}
    for name, lines in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert bench_trainers.figures_table(str(tmp_path)).splitlines()[2:] == [
        "| bert pretrain base 128 | 6500 seq/s, MFU 43.4% | 2600 seq/s (MFU by our formula 17.0%) | 2.50x | "
        "MFU >= 45%: not met |",
        "| bert pretrain large 512 | 500 seq/s, MFU 50.0% | - | - | >= 525 seq/s: not met |",
        "| bert pretrain base 128 reduce-overhead | 7000 seq/s, MFU 46.7% | 2600 seq/s (MFU by our formula 17.0%) | "
        "2.69x | MFU >= 45%: met |",
        "| detr train r50 | 120.0 img/s | 75.0 img/s | 1.60x | >= 1.5x and >= 100 img/s: met |",
        "| detr train r50-compiled | 150.0 img/s | 75.0 img/s | 2.00x | - |",
        "",
        "- bert-base-128 (profile steps-82-84): wall"]
