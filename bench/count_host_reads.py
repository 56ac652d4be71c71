"""Reads from the device per ``bert pretrain`` step: calls of ``Tensor.item``, ``tolist``,
``__bool__``, ``__float__``, ``__int__``, ``__index__`` made by the trainer, the model, the
optimizer and the run scaffold while the steps run (not by the data pipeline, whose checks read
host batches before they go to the device). On a CPU each is what would be a device sync on a GPU.

    python bench/count_host_reads.py                 # this checkout
    python bench/count_host_reads.py --detr          # the same for detr train
    python bench/count_host_reads.py --finetune      # the same for the fine-tuning programs (bert ner)
    PYTHONPATH=/tmp/base/src python bench/count_host_reads.py   # another checkout, for a before/after

A tiny BERT on the bundled sample text, 9 steps, logging every 3rd.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "tests", "data", "bert")
WATCHED = ("pretraining/pretrain.py", "bert/optimization.py", "training/precision.py", "bert/model.py",
           "training/run.py", "training/distributed.py")


def main() -> None:
    from bertdetr.bert.model import BertConfig
    from bertdetr.bert.pretraining import pretrain as pretrain_module
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig
    from bertdetr.bert.pretraining.make_data import make_pretraining_data

    reads: list = []

    def from_data(frame) -> bool:
        while frame is not None:
            if frame.f_code.co_filename.endswith("pretraining/dataset.py"):
                return True
            frame = frame.f_back
        return False

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            if frame.f_code.co_filename.endswith(WATCHED) and not from_data(frame):
                reads.append(name)
            return real(self, *args, **kwargs)
        return read

    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "train.tfrecord")
        vocab = os.path.join(DATA, "vocab-uncased.txt")
        make_pretraining_data([os.path.join(DATA, "sample_text.txt")], records, vocab,
                              PretrainingDataConfig(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=2))
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            setattr(torch.Tensor, name, counting(name))
        real_step = pretrain_module.train_step
        marks: list[int] = []

        def marked(t):
            marks.append(len(reads))
            return real_step(t)

        pretrain_module.train_step = marked
        model = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64)
        pretrain_module.pretrain(pretrain_module.PretrainConfig(
            input_files=[records], output_dir=os.path.join(tmp, "run"), model=model, vocab_file=vocab, batch_size=4,
            num_train_steps=10, num_warmup_steps=2, log_every=3, save_every=1000, progress=False))
    per_step = [b - a for a, b in zip(marks, marks[1:])]  # steps 1..9 (step 10 also saves)
    print(f"reads per step (steps 1-9, logging at 3, 6, 9): {per_step}")
    print(f"steps that do not log: {sum(n for i, n in enumerate(per_step, 1) if i % 3)} reads in "
          f"{sum(1 for i in range(1, 10) if i % 3)} steps; logged steps: {[per_step[i - 1] for i in (3, 6, 9)]}")


def main_detr() -> None:
    """The same for ``detr train``: a tiny DETR on generated shapes, 7 iterations, logging every 3rd;
    not counted: the matcher's cost matrices (a ``.cpu()`` copy, which the issue allows) and the
    checks of host-side data (targets, padding masks, the epoch's permutation)."""
    import json

    from bertdetr.detr import engine
    from bertdetr.detr.data.shapes import ShapesConfig, make_shapes
    from bertdetr.detr.train import train_detr
    from bertdetr.detr.train_config import load_train_setup

    watched = ("detr/engine.py", "detr/model.py", "detr/loss.py", "detr/matcher.py", "training/run.py",
               "training/precision.py", "training/distributed.py", "detr/data/coco.py")
    host_side = {("detr/matcher.py", "check_targets"), ("detr/loss.py", "<genexpr>"),
                 ("detr/data/coco.py", "padding_mask_to"), ("detr/engine.py", "__init__")}
    reads: list = []

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            code, inner = frame.f_code, frame
            while inner is not None and inner.f_code.co_name != "__getitem__":
                inner = inner.f_back
            if code.co_filename.endswith(watched) and inner is None and not any(
                    code.co_filename.endswith(f) and code.co_name == fn for f, fn in host_side):
                reads.append(name)
            return real(self, *args, **kwargs)
        return read

    with tempfile.TemporaryDirectory() as tmp:
        make_shapes(os.path.join(tmp, "s"), "train", ShapesConfig(num_images=8, min_size=48, max_size=64, max_objects=2))
        model = {"preset": "r18", "backbone": {"depth": 18, "base_channels": 8, "norm": "batch"}, "num_queries": 10,
                 "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
                 "decoder": {"num_layers": 2, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
                 "positional_encoding": {"num_feats": 16}}
        cfg = {"data": {"train_ann": "s/train.json", "train_images": "s/images", "train_scales": [48, 64],
                        "max_size": 96, "crop_resize": [56], "crop_size": [32, 48]},
               "model": model, "train": {"output_dir": "run", "epochs": 2, "batch_size": 2, "num_workers": 0,
                                         "log_every": 3, "progress": False, "save_every": 100}}
        with open(os.path.join(tmp, "cfg.json"), "w") as f:
            json.dump(cfg, f)
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            setattr(torch.Tensor, name, counting(name))
        real_step = engine.train_step
        marks: list[int] = []

        def marked(t, group):
            marks.append(len(reads))
            return real_step(t, group)

        engine.train_step = marked
        train_detr(load_train_setup(os.path.join(tmp, "cfg.json")))
    per_step = [b - a for a, b in zip(marks, marks[1:])]
    print(f"detr train, reads per iteration (1-7, logging at 3, 6): {per_step}")


def main_finetune() -> None:
    """The same for the fine-tuning programs (their one training loop, ``finetune.finetune``):
    ``bert ner`` of a tiny BERT on the bundled Chinese NER sample, 8 steps of 50 windows, logging
    every 3rd; not counted: the host's own tensors of the batches (the shuffle, the cut to the
    longest row)."""
    import json

    from bertdetr.bert.finetuning import finetune as finetune_module
    from bertdetr.cli import main as cli

    watched = ("finetuning/finetune.py", "bert/optimization.py", "training/precision.py", "bert/model.py",
               "bert/heads.py", "training/run.py", "training/distributed.py")
    host_side = ("take_batch", "train_batch_indices")
    reads: list = []

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            inner = frame
            while inner is not None and inner.f_code.co_name not in host_side:
                inner = inner.f_back
            if frame.f_code.co_filename.endswith(watched) and inner is None:
                reads.append(name)
            return real(self, *args, **kwargs)
        return read

    vocab = os.path.join(DATA, "zh", "vocab_zh.txt")
    with open(vocab, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "bert_config.json")
        with open(config, "w") as f:
            json.dump({"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64, "max_position_embeddings": 64}, f)
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
            setattr(torch.Tensor, name, counting(name))
        real_step = finetune_module.finetune_step
        marks: list[int] = []

        def marked(*args):
            marks.append(len(reads))
            return real_step(*args)

        finetune_module.finetune_step = marked
        cli(["bert", "ner", "--data-dir", os.path.join(DATA, "zh", "ner"), "--output-dir", os.path.join(tmp, "run"),
             "--vocab-file", vocab, "--bert-config-file", config, "--max-seq-length", "32", "--do-train",
             "--num-train-epochs", "1", "--train-batch-size", "50", "--log-every", "3", "--no-progress",
             "--device", "cpu"])
    per_step = [b - a for a, b in zip(marks, marks[1:])]  # steps 1..7 (step 8 also saves)
    print(f"bert ner (fine-tuning), reads per step (1-7, logging at 3, 6): {per_step}")


if __name__ == "__main__":
    main_detr() if "--detr" in sys.argv else main_finetune() if "--finetune" in sys.argv else main()
