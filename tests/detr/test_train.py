import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from bertdetr.training.checkpoint import list_checkpoints, load_checkpoint
from bertdetr.cli import main
from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
from bertdetr.detr.train import train_detr
from bertdetr.detr.train_config import load_train_setup
from bertdetr.errors import BertDetrError
from bertdetr.training.scalars import read_scalars

TINY_MODEL = {"preset": "r18", "num_queries": 5,
              "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
              "decoder": {"num_layers": 2, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
              "positional_encoding": {"num_feats": 16}}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, "train", ShapesConfig(num_images=8, min_size=48, max_size=64, max_objects=2, seed=0))
    make_shapes(root, "val", ShapesConfig(num_images=4, min_size=48, max_size=64, max_objects=2, seed=0))
    return root


def _config(shapes, tmp_path, name="cfg.json", **train):
    cfg = {"data": {"train_ann": str(shapes / "train.json"), "train_images": str(shapes / "images"),
                    "val_ann": str(shapes / "val.json"), "val_images": str(shapes / "images"),
                    "train_scales": [48, 64], "max_size": 96, "crop_resize": [56], "crop_size": [32, 48],
                    "test_size": 64},
           "model": TINY_MODEL,
           "train": {"output_dir": "run", "epochs": 2, "batch_size": 2, "num_workers": 0, "log_every": 1,
                     "progress": False, "lr_drop": [1], **train}}
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def _losses(out):
    return [v for _, v in read_scalars(os.path.join(out, "scalars.csv"))["loss"]]


def test_train_resume_is_exact_and_exports(shapes, tmp_path):
    full = train_detr(load_train_setup(_config(shapes, tmp_path)))
    assert full["iterations"] == 8 and full["epoch"] == 2
    assert set(full["metrics"]) >= {"AP", "AP50", "AR100"}
    out = tmp_path / "run"
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "classes.json").is_file()
    assert (out / "loss_curves.png").is_file() and (out / "eval_metrics.json").is_file() and (out / "eval_detections.json").is_file()
    # lr dropped tenfold after epoch 1 (4 iterations)
    lrs = [v for _, v in read_scalars(out / "scalars.csv")["lr"]]
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-5)

    split = _config(shapes, tmp_path, "split.json", output_dir="split")
    part = train_detr(load_train_setup(split, max_iters=3))  # stops mid-epoch 0
    assert part["iterations"] == 3
    state = load_checkpoint(list_checkpoints(tmp_path / "split")[-1][1])
    assert (state["epoch"], state["batch_in_epoch"], state["iteration"]) == (0, 3, 3)
    assert state["class_names"] == ["circle", "square", "triangle", "cross"]
    train_detr(load_train_setup(split, resume=True))
    assert _losses(out) == pytest.approx(_losses(tmp_path / "split"), rel=1e-6)


def test_validation_scores_the_current_weights_and_leaves_training_as_it_was(shapes, tmp_path):
    """Validating after each epoch neither moves the training's random numbers (the losses equal those
    of a run that validates at its end only, bit for bit, so a resume past a validation is exact) nor
    scores stale weights (the last validation's detections are those of detr eval on the exported
    model: the backbone's folded weights made again after fused AdamW's steps)."""
    train_detr(load_train_setup(_config(shapes, tmp_path, epochs=3, eval_every=1, output_dir="each")))
    train_detr(load_train_setup(_config(shapes, tmp_path, "end.json", epochs=3, eval_every=100, output_dir="end")))
    assert _losses(tmp_path / "each") == _losses(tmp_path / "end")
    assert main(["detr", "eval", "--checkpoint", str(tmp_path / "each" / "model"), "--ann", str(shapes / "val.json"),
                 "--images", str(shapes / "images"), "--out", str(tmp_path / "ev")]) == 0
    fresh = json.loads((tmp_path / "ev" / "results.json").read_text())
    during = json.loads((tmp_path / "each" / "eval_detections.json").read_text())
    assert len(during) == len(fresh) > 0
    assert [d["score"] for d in during] == pytest.approx([d["score"] for d in fresh], abs=1e-6)
    assert [d["bbox"] for d in during] == [pytest.approx(d["bbox"], abs=1e-3) for d in fresh]


def test_a_resume_with_other_categories_is_refused_and_records_nothing(shapes, tmp_path, capsys):
    path = _config(shapes, tmp_path)
    train_detr(load_train_setup(path, max_iters=2))
    recorded = (tmp_path / "run" / "train_config.json").read_text()
    for split in ("train", "val"):
        coco = json.loads((shapes / f"{split}.json").read_text())
        coco["categories"].insert(0, {"id": 0, "name": "background"})
        (tmp_path / f"{split}_plus.json").write_text(json.dumps(coco))
    cfg = json.loads(path.read_text())
    cfg["data"].update(train_ann=str(tmp_path / "train_plus.json"), val_ann=str(tmp_path / "val_plus.json"))
    path.write_text(json.dumps(cfg))
    with pytest.raises(BertDetrError, match=r"has categories \[0, 1, 2, 3, 4\] .* the run being resumed \[1, 2, 3, 4\]"):
        train_detr(load_train_setup(path, resume=True))
    assert (tmp_path / "run" / "train_config.json").read_text() == recorded
    # the same ids under new names: said, and the model exported with them
    for split in ("train", "val"):
        coco = json.loads((shapes / f"{split}.json").read_text())
        coco["categories"][0]["name"] = "disc"
        (tmp_path / f"{split}_plus.json").write_text(json.dumps(coco))
    capsys.readouterr()
    train_detr(load_train_setup(path, resume=True, max_iters=3))
    assert "the classes' names changed since the run began: circle, square, triangle, cross -> disc, square" \
        in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "model" / "classes.json").read_text())["class_names"][0] == "disc"


def test_resume_is_exact_with_persistent_workers_and_aspect_ratio_groups(shapes, tmp_path):
    """Issue 18 item 6: two workers that live through both epochs, images batched by orientation
    (mmdet's AspectRatioBatchSampler), OpenCV's pipeline: a run stopped mid-epoch and resumed
    logs the losses of the run that went through, and the grouping changed the batches."""
    options = {"num_workers": 2, "group_by_aspect_ratio": True}
    train_detr(load_train_setup(_config(shapes, tmp_path, "full.json", output_dir="full", **options)))
    split = _config(shapes, tmp_path, "split.json", output_dir="split", **options)
    train_detr(load_train_setup(split, max_iters=3))
    train_detr(load_train_setup(split, resume=True))
    assert _losses(tmp_path / "full") == pytest.approx(_losses(tmp_path / "split"), rel=1e-6)
    train_detr(load_train_setup(_config(shapes, tmp_path, "plain.json", output_dir="plain", num_workers=2)))
    assert _losses(tmp_path / "plain") != pytest.approx(_losses(tmp_path / "full"), rel=1e-6)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(shapes, tmp_path, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def nan_at_6(params, max_norm):
        calls["n"] += 1
        norm = real(params, max_norm)
        return torch.tensor(float("nan")) if calls["n"] == 6 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_at_6)
    with pytest.raises(BertDetrError, match=r"non-finite loss at iteration 6 \(epoch 2\).*ckpt-00000004"):
        train_detr(load_train_setup(_config(shapes, tmp_path, eval_every=5)))
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [4]


def test_fine_tune_with_new_class_count_needs_reset_head(shapes, tmp_path):
    from bertdetr.detr.config import DETRConfig
    from bertdetr.detr.model import build_detr
    from bertdetr.detr.train_config import model_config_from_dict
    from bertdetr.detr.weights import save_detr

    cfg = model_config_from_dict(TINY_MODEL).with_num_classes(7)
    assert isinstance(cfg, DETRConfig)
    save_detr(build_detr(cfg), cfg, tmp_path / "pretrained")
    path = _config(shapes, tmp_path, init_checkpoint=str(tmp_path / "pretrained"), epochs=1, max_iters=1)
    with pytest.raises(BertDetrError, match="class"):
        train_detr(load_train_setup(path))
    assert train_detr(load_train_setup(path, reset_head=True))["iterations"] == 1


def test_pretrained_backbone_is_loaded_by_the_trainer_not_over_a_checkpoint(shapes, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from bertdetr.detr.weights import load_detr, save_detr

    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = dict(TINY_MODEL, backbone={"pretrained": str(tmp_path / "resnet18.pth")})
    path = _config(shapes, tmp_path, epochs=1, max_iters=1, output_dir="fresh")
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps(dict(cfg, model=model)))
    train_detr(load_train_setup(path))
    fresh, fresh_cfg = load_detr(tmp_path / "fresh" / "model")
    # the stem is frozen (frozen_stages 1): still the ImageNet file's after a step
    assert torch.equal(fresh.backbone.conv1.weight, tv.conv1.weight)
    cfg["train"].update(init_checkpoint=str(tmp_path / "fresh" / "model"), output_dir="tuned")
    with torch.no_grad():
        fresh.backbone.conv1.weight.mul_(2)
    save_detr(fresh, fresh_cfg, tmp_path / "fresh" / "model")
    path.write_text(json.dumps(dict(cfg, model=model)))
    train_detr(load_train_setup(path))
    tuned, _ = load_detr(tmp_path / "tuned" / "model")
    assert torch.equal(tuned.backbone.conv1.weight, 2 * tv.conv1.weight)  # the checkpoint's, not ImageNet's


def test_bad_config_and_data_are_clear_errors(shapes, tmp_path, capsys):
    assert main(["detr", "train", str(tmp_path / "missing.json")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": {"train_ann": "none.json", "train_images": "."}, "train": {"output_dir": "o"}}))
    assert main(["detr", "train", str(bad)]) == 2
    assert "annotation file not found" in capsys.readouterr().err
    bad.write_text(json.dumps({"data": {"train_ann": "x", "train_images": "."}, "train": {"output_dir": "o", "epochs": 0}}))
    assert main(["detr", "train", str(bad)]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err


def test_cli_make_shapes_train_eval_predict(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["detr", "make-shapes", "--out", str(data), "--train-images", "4", "--val-images", "2",
                 "--min-size", "48", "--max-size", "56"]) == 0
    cfg = {"data": {"train_ann": "data/train.json", "train_images": "data/images", "val_ann": "data/val.json",
                    "val_images": "data/images", "train_scales": [48], "max_size": 64, "crop_resize": [48],
                    "crop_size": [32, 48], "test_size": 48},
           "model": TINY_MODEL, "train": {"output_dir": "run", "epochs": 1, "batch_size": 2, "num_workers": 0}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["detr", "train", str(tmp_path / "cfg.json"), "--no-progress"]) == 0
    assert "val: AP" in capsys.readouterr().out
    assert main(["detr", "train", str(tmp_path / "cfg.json"), "--no-progress", "--resume"]) == 0  # a finished run
    assert "iteration 2 (epoch 1): nothing left to train; the model exported again" in capsys.readouterr().out
    model = str(tmp_path / "run" / "model")
    assert main(["detr", "eval", "--checkpoint", model, "--ann", str(data / "val.json"), "--images",
                 str(data / "images"), "--out", str(tmp_path / "ev"), "--test-size", "48"]) == 0
    metrics = json.loads((tmp_path / "ev" / "eval_metrics.json").read_text())
    assert "AP50" in metrics and metrics["coco_backend"] == "pycocotools"
    if importlib.util.find_spec("faster_coco_eval"):
        assert main(["detr", "eval", "--checkpoint", model, "--ann", str(data / "val.json"), "--images",
                     str(data / "images"), "--out", str(tmp_path / "ev2"), "--test-size", "48",
                     "--coco-backend", "faster-coco-eval"]) == 0
        fast = json.loads((tmp_path / "ev2" / "eval_metrics.json").read_text())
        assert fast["coco_backend"] == "faster-coco-eval"
        assert all(abs(fast[k] - metrics[k]) < 1e-6 for k in ("AP", "AP50", "AR100"))
    img = str(data / "images" / "val_000000.png")
    assert main(["detr", "predict", "--checkpoint", model, img, "--out", str(tmp_path / "pred"),
                 "--threshold", "0", "--test-size", "48"]) == 0
    assert (tmp_path / "pred" / "val_000000.png").is_file()
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert results and results[0]["image_id"] == "val_000000.png" and results[0]["category_id"] in (1, 2, 3, 4)
    assert main(["detr", "predict", "--checkpoint", model, str(tmp_path / "nope.png"), "--out", str(tmp_path / "p2")]) == 2


def test_two_processes_with_torchrun(shapes, tmp_path, capsys):
    path = _config(shapes, tmp_path, epochs=1, eval_every=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "bertdetr.cli", "detr", "train", str(path), "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["iteration"] == 2  # 8 images / 2 ranks / batch 2
    assert "AP" in json.loads((tmp_path / "run" / "eval_metrics.json").read_text())
    # one process goes on with the two's run, and says what changed
    train_detr(load_train_setup(path, resume=True, epochs=2))
    assert "resuming with 1 process(es), the checkpoint's run had 2: new random streams" in capsys.readouterr().out


def test_save_best_keeps_and_exports_the_model_of_the_best_validation_ap(shapes, tmp_path, monkeypatch):
    """Validation APs scripted (the tiny model scores 0 throughout): 0.1, 0.3, 0.2, 0.3 -> the model of
    epoch 2 (the first to reach the best) is kept and exported, not the last."""
    from bertdetr.detr import train as train_module
    from bertdetr.detr.weights import load_detr

    real = train_module.evaluate_detr
    scripted = iter([0.1, 0.3, 0.2, 0.3])

    def evaluate(*args, **kwargs):
        result = real(*args, **kwargs)
        result.metrics["AP"] = next(scripted)
        return result

    monkeypatch.setattr(train_module, "evaluate_detr", evaluate)
    result = train_detr(load_train_setup(_config(shapes, tmp_path, epochs=4, lr_drop=[3], save_best=True, keep_last=0)))
    out = tmp_path / "run"
    best = json.loads((out / "best.json").read_text())
    assert best == {"metric": "AP", "value": 0.3, "epoch": 2, "iteration": 8} and result["best"] == best
    for name in ("model.safetensors", "config.json", "classes.json"):
        assert (out / "model" / name).read_bytes() == (out / "model_best" / name).read_bytes()
    exported = load_detr(out / "model")[0].state_dict()
    at_best = load_checkpoint(dict(list_checkpoints(out))[8])["model"]
    last = load_checkpoint(dict(list_checkpoints(out))[16])["model"]
    assert all(torch.equal(exported[k], at_best[k]) for k in exported)
    assert not all(torch.equal(exported[k], last[k]) for k in exported)


def test_the_test_scale_goes_with_the_model(shapes, tmp_path):
    """Trained and evaluated at 64 pixels: the exported folder records it, and predict, eval and the
    Python API use it without being told (issue 21: at DETR's default 800 such a model sees nothing)."""
    from bertdetr.cli import main
    from bertdetr.detr import inference_detector, init_detector

    train_detr(load_train_setup(_config(shapes, tmp_path, epochs=1)))
    model = tmp_path / "run" / "model"
    assert json.loads((model / "pipeline.json").read_text()) == {"pipeline": "bertdetr", "test_size": 64,
                                                                  "max_size": 96}
    image = str(shapes / "images" / sorted(os.listdir(shapes / "images"))[0])
    runs = {}
    for name, extra in (("defaults", []), ("told", ["--test-size", "64", "--max-size", "96"]),
                        ("800", ["--test-size", "800", "--max-size", "1333"])):
        assert main(["detr", "predict", "--checkpoint", str(model), image, "--out", str(tmp_path / name),
                     "--threshold", "0", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert runs["defaults"] == runs["told"] != runs["800"]
    detector = init_detector(model, device="cpu")
    assert (detector.test_size, detector.max_size) == (64, 96)
    found = inference_detector(detector, image)
    assert [round(float(s), 5) for s in found.scores] == [round(r["score"], 5) for r in runs["defaults"]]


def test_a_converted_mmdet_model_records_its_configs_test_scale(tmp_path):
    from bertdetr.cli import main
    from tests.conftest import DATA

    out = tmp_path / "converted"
    assert main(["detr", "convert", "--from", "mmdet", "--checkpoint", str(DATA / "detr" / "mmdet2_detr_small.pt"),
                 "--config", str(DATA / "detr" / "mmdet2_detr_small.config.py"), "--output", str(out)]) == 0
    assert json.loads((out / "pipeline.json").read_text()) == {"pipeline": "mmdet", "test_size": 800, "max_size": 1333}
    from bertdetr.detr.convert.mmdet_config import mmdet_test_scale

    assert mmdet_test_scale({"test_pipeline": [{"type": "Resize", "scale": (1000, 600), "keep_ratio": True}]}) == (600, 1000)
    assert mmdet_test_scale({"model": {}}) is None


def test_no_device_reads_on_detr_steps_that_do_not_log(shapes, tmp_path, monkeypatch):
    """Issue 18: a step that does not log reads nothing back from the device but the matcher's cost
    matrices (``.cpu()``, not counted here), a logged step once; the padding is known on the host."""
    from bertdetr.detr import engine
    from tests.device_reads import count_reads, in_stack

    watched = ("detr/engine.py", "detr/model.py", "detr/loss.py", "detr/matcher.py", "training/run.py",
               "training/precision.py", "training/distributed.py", "detr/data/coco.py", "detr/data/loader.py")
    # the host's own data: the dataset's items, the criterion's checks of the targets (which stay on
    # the host by design), the padding mask's check, the epoch sampler's permutation, the image
    # sizes the batch normaliser reads from the host's targets
    host_side = {("detr/matcher.py", "check_targets"), ("detr/loss.py", "<genexpr>"),
                 ("detr/data/coco.py", "padding_mask_to"), ("detr/data/loader.py", "__init__"),
                 ("detr/data/loader.py", "<genexpr>")}

    def on_host(frame) -> bool:
        code = frame.f_code
        return any(code.co_filename.endswith(f) and code.co_name == fn for f, fn in host_side) or in_stack(
            frame, lambda f: f.f_code.co_name == "__getitem__")

    reads = count_reads(monkeypatch, watched, on_host)
    real_step = engine.train_step
    marks = []

    def marked(t, group):
        marks.append(len(reads))
        return real_step(t, group)

    monkeypatch.setattr(engine, "train_step", marked)
    train_detr(load_train_setup(_config(shapes, tmp_path, epochs=2, log_every=3, save_every=100, eval_every=100)))
    per_step = [reads[a:b] for a, b in zip(marks, marks[1:])]  # iterations 1..7 (8 ends the run)
    assert [len(r) for r in per_step] == [0, 0, 1, 0, 0, 1, 0], per_step


def test_padding_mask_is_copied_to_the_device_without_waiting():
    """The loaders pin their batches on a GPU; a mask copied from pinned memory without
    ``non_blocking`` makes the host wait for the GPU before the step's forward is queued. The copy
    to the "meta" device shows what a GPU would be asked (the dispatched ``_to_copy``)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from bertdetr.detr.data.coco import padding_mask_to, padding_masks

    class Copies(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.non_blocking = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default:
                self.non_blocking.append((kwargs or {}).get("non_blocking", False))
            return func(*args, **(kwargs or {}))

    with Copies() as copies:
        mask = padding_mask_to(padding_masks([(4, 6), (5, 3)], (5, 6)), torch.device("meta"))
        unpadded = padding_mask_to(padding_masks([(5, 6)], (5, 6)), torch.device("meta"))
    assert mask.shape == (2, 5, 6) and mask.device.type == "meta" and unpadded is None
    assert copies.non_blocking == [True]


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of this process alone, for a real DistributedDataParallel on the CPU."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'process_group'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _set_up(shapes, tmp_path, name, **train):
    from bertdetr.detr.train import setup_training

    return setup_training(load_train_setup(_config(shapes, tmp_path, f"{name}.json", output_dir=name, **train)))


def test_gradient_accumulation_under_ddp_all_reduces_once_per_step(shapes, tmp_path, one_process_group):
    """``grad_accum`` 3 under DDP: the gradients go over the network in the last batch's backward
    only (``no_sync`` for the others: each bucket all-reduced once a step, not three times), and
    the step is the same as without DDP."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    from bertdetr.detr import engine

    def step(name, ddp):
        t = _set_up(shapes, tmp_path, name, grad_accum=3)
        try:
            buckets = []
            if ddp:
                t.net = DistributedDataParallel(t.net, find_unused_parameters=False)

                def counting(state, bucket):
                    buckets.append(bucket.index())
                    return allreduce_hook(state, bucket)

                t.net.register_comm_hook(None, counting)
            batches = t.loader.epoch(0)
            _, sums, grad_norm = engine.train_step(t, [next(batches) for _ in range(3)])
            return buckets, [sums, grad_norm, *(p.detach().clone() for p in t.model.parameters())]
        finally:
            t.loader.close()
            t.run.close()

    buckets, with_ddp = step("ddp", ddp=True)
    assert buckets and sorted(buckets) == list(range(len(buckets))), buckets
    _, alone = step("alone", ddp=False)
    assert all(torch.equal(a, b) for a, b in zip(with_ddp, alone))


def test_ddp_of_a_frozen_backbone_does_not_broadcast_its_buffers_each_forward(shapes, tmp_path, monkeypatch,
                                                                             one_process_group):
    """FrozenBatchNorm2d's buffers, the model's only ones, never change: the trainer's DDP leaves
    them alone at each forward (no collective per batch, no copy over the backbone's folded-BN
    cache); a trainable BatchNorm backbone keeps DDP's broadcast of rank 0's statistics."""
    import dataclasses

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bertdetr.detr import train as train_module
    from bertdetr.detr.model import build_detr
    from tests.detr.conftest import tiny_detr_config

    options = []
    monkeypatch.setattr(train_module, "data_parallel", lambda net, env, device, **o: options.append(o) or net)
    t = _set_up(shapes, tmp_path, "frozen")
    t.loader.close()
    t.run.close()
    assert options == [{"find_unused_parameters": False, **train_module.without_forward_buffer_sync()}]

    ddp = DistributedDataParallel(t.model, **options[0])
    broadcasts = []
    real = dist._broadcast_coalesced
    monkeypatch.setattr(dist, "_broadcast_coalesced", lambda *a, **k: broadcasts.append(a) or real(*a, **k))
    bn = t.model.backbone.layer4[0].bn1
    versions = [b._version for b in bn.buffers()]
    images = torch.rand(2, 3, 48, 64)
    for _ in range(2):
        out = ddp(images)
        (out["pred_logits"].sum() + out["pred_boxes"].sum()).backward()
    assert broadcasts == [] and [b._version for b in bn.buffers()] == versions

    config = tiny_detr_config(5, 3)
    batch_norm = dataclasses.replace(config, backbone=dataclasses.replace(config.backbone, norm="batch"))
    assert train_module.ddp_options(build_detr(batch_norm)) == {}
    assert train_module.ddp_options(build_detr(config)) == train_module.without_forward_buffer_sync()


def test_validation_on_a_bare_json_and_resized_photos(shapes, tmp_path):
    """``detr train``'s validation evaluates as ``detr eval`` does: annotations without ``iscrowd``,
    ``area`` or ``id`` (which training reads) no longer crash inside pycocotools after an epoch of
    training, and photos resized since the json was written are scored in the json's pixels, with
    one warning line."""
    from PIL import Image

    val = json.loads((shapes / "val.json").read_text())
    for a in val["annotations"]:
        for key in ("iscrowd", "area", "id"):
            a.pop(key, None)
    (tmp_path / "bare_val.json").write_text(json.dumps(val))
    (tmp_path / "big").mkdir()
    for im in val["images"]:
        with Image.open(shapes / "images" / im["file_name"]) as pic:
            pic.resize((2 * pic.width, 2 * pic.height)).save(tmp_path / "big" / im["file_name"])
    path = _config(shapes, tmp_path, epochs=1, max_iters=1)
    cfg = json.loads(path.read_text())
    cfg["data"].update(val_ann=str(tmp_path / "bare_val.json"), val_images=str(tmp_path / "big"))
    path.write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match=r"4 of 4 images' files differ in size from the annotation json's width and "
                                         r"height \(e\.g\. .*: their detections are scaled to the json's pixels"):
        summary = train_detr(load_train_setup(path))
    assert set(summary["metrics"]) >= {"AP", "AP50", "AR100"}
    detections = json.loads((tmp_path / "run" / "eval_detections.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in val["images"]}
    assert all(d["bbox"][0] + d["bbox"][2] <= sizes[d["image_id"]][0] + 1e-3 for d in detections)
