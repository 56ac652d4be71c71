"""The command line: every option documented with its default, boolean flags alike everywhere,
options made from the config dataclasses, and a complete documented DETR training config."""

import argparse
import dataclasses
import json

import pytest

from bertdetr.cli import build_parser, main
from bertdetr.options import absl_bool


def _walk(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))
        elif action.option_strings and action.help != argparse.SUPPRESS and not isinstance(
                action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, parser, action


def test_every_option_has_help_and_shows_its_default():
    seen = 0
    for path, parser, action in _walk(build_parser()):
        seen += 1
        assert action.help, f"{' '.join(path)} {action.option_strings[0]} has no help"
        if action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
            text = parser.formatter_class(parser.prog)._get_help_string(action) % {"default": action.default}
            assert "default" in text, f"{' '.join(path)} {action.option_strings[0]}: {text}"
    assert seen > 150


def test_boolean_flags_are_alike_everywhere():
    for path, _, action in _walk(build_parser()):
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            # the only exceptions: build-vocab's --lowercase/--cased pair (beside --do-lower-case)
            assert path == ("bert", "build-vocab") and action.option_strings in (["--lowercase"], ["--cased"])
        if action.type is absl_bool:
            assert action.nargs == "?" and action.const is True


@pytest.mark.parametrize("argv,dest,value", [
    (["bert", "pretrain", "--input-file", "x", "--output-dir", "o", "--do-lower-case"], "do_lower_case", True),
    (["bert", "pretrain", "--input_file", "x", "--output_dir", "o", "--do_lower_case=False"], "do_lower_case", False),
    (["bert", "pretrain", "--input_file", "x", "--output_dir", "o", "--nodo_lower_case"], "do_lower_case", False),
    (["bert", "pretrain", "--input-file", "x", "--output-dir", "o", "--resume"], "resume", True),
    (["bert", "pretrain", "--input-file", "x", "--output-dir", "o", "--no-progress"], "progress", False),
    (["bert", "make-data", "--input-file", "x", "--output-file", "o", "--vocab-file", "v", "--do_lower_case=false"],
     "do_lower_case", False),
    (["bert", "make-data", "--input-file", "x", "--output-file", "o", "--vocab-file", "v", "--do-whole-word-mask"],
     "do_whole_word_mask", True),
    (["bert", "build-vocab", "--input-file", "x", "--output", "o", "--do_lower_case=False"], "do_lower_case", False),
    (["bert", "build-vocab", "--input-file", "x", "--output", "o", "--cased"], "do_lower_case", False),
    (["bert", "classify", "--task-name", "mrpc", "--data-dir", "d", "--output-dir", "o", "--do_train=true"],
     "do_train", True),
    (["bert", "convert", "--tf-checkpoint", "c", "--output", "o", "--encoder-only"], "encoder_only", True),
    (["detr", "train", "cfg.json", "--resume"], "resume", True),
    (["detr", "train", "cfg.json", "--resume=false"], "resume", False),
    (["detr", "train", "cfg.json"], "resume", None),  # not given: the config file's value stands
    (["detr", "train", "cfg.json", "--fp16", "yes"], "fp16", True),
    (["detr", "convert", "--from", "hf", "--checkpoint", "c", "--output", "o", "--reset_head"], "reset_head", True),
])
def test_boolean_flags_bare_and_with_a_value(argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value


def test_pretrain_options_are_the_config_fields_with_their_defaults():
    from bertdetr.bert.cli import _PRETRAIN_FIELDS
    from bertdetr.bert.model import BertConfig
    from bertdetr.bert.pretraining.pretrain import PretrainConfig

    args = build_parser().parse_args(["bert", "pretrain", "--input-file", "x", "--output-dir", "o"])
    config = PretrainConfig(input_files=["x"], output_dir="o", model=BertConfig(vocab_size=10))
    names = {f.name for f in dataclasses.fields(PretrainConfig)} - {"input_files", "eval_files", "model"}
    assert set(_PRETRAIN_FIELDS) == names
    for name in names:
        assert getattr(args, name) == getattr(config, name), name
    # Google's flag names
    args = build_parser().parse_args(["bert", "pretrain", "--input_file", "x", "--output_dir", "o",
                                      "--train_batch_size", "8", "--save_checkpoints_steps", "50",
                                      "--learning_rate", "2e-5"])
    assert (args.batch_size, args.save_every, args.learning_rate) == (8, 50, 2e-5)


def test_detr_train_options_are_the_train_fields():
    from bertdetr.detr.train_config import TrainConfig

    args = build_parser().parse_args(["detr", "train", "c.json", "--lr", "3e-4", "--lr-drop", "5", "7"])
    assert (args.lr, args.lr_drop) == (3e-4, [5, 7])
    assert all(getattr(args, f.name) is None for f in dataclasses.fields(TrainConfig)
               if f.name not in ("lr", "lr_drop"))


def test_detr_config_full_writes_every_field_documented(tmp_path):
    from bertdetr.detr.config import DETRConfig
    from bertdetr.detr.train_config import DataConfig, TrainConfig, load_train_setup

    out = tmp_path / "train.json"
    assert main(["detr", "config", "--preset", "r50", "--full", "--output", str(out)]) == 0
    raw = json.loads(out.read_text())
    setup = load_train_setup(out)
    assert setup.model == DETRConfig.r50()
    assert setup.train == dataclasses.replace(TrainConfig(output_dir=setup.train.output_dir))
    doc = raw["_doc"]
    expected = {f"data.{f.name}" for f in dataclasses.fields(DataConfig)} | {
        f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    for section, value in raw["model"].items():
        expected |= {f"model.{section}.{k}" for k in value} if isinstance(value, dict) else {f"model.{section}"}
    assert set(doc) == expected
    assert all(doc.values())


def test_one_way_to_replace_a_section_and_one_validation_helper():
    from bertdetr.detr.config import DETRConfig
    from bertdetr.detr.train_config import TrainConfig
    from bertdetr.errors import BertDetrError

    config = DETRConfig.r18(num_classes=4)
    changed = config.replace_section("bbox_head", num_classes=7)
    assert changed.bbox_head.num_classes == 7 and changed.backbone == config.backbone
    assert config.bbox_head.num_classes == 4
    with pytest.raises(BertDetrError, match="bbox_head.num_classes must be >= 1, got 0"):
        config.replace_section("bbox_head", num_classes=0)
    with pytest.raises(BertDetrError, match="train.num_threads must be >= 1, got 0"):
        TrainConfig(output_dir="o", num_threads=0)
    with pytest.raises(BertDetrError, match="train.max_iters must be >= 1"):
        TrainConfig(output_dir="o", max_iters=0)


def test_field_specs_follow_a_base_config_of_the_package():
    from bertdetr.options import field_specs

    specs = field_specs("bertdetr.bert.finetuning.squad", "SquadConfig")
    base = field_specs("bertdetr.bert.finetuning.finetune", "FinetuneConfig")
    # the base's fields first, in their order; a field the subclass redefines keeps its place
    assert list(specs)[:len(base)] == list(base)
    assert base["max_seq_length"].default is dataclasses.MISSING
    assert specs["max_seq_length"].default == 384 and "[CLS] question [SEP]" in specs["max_seq_length"].doc
    assert field_specs("bertdetr.bert.finetuning.classifier", "ClassifierConfig")["max_seq_length"].default == 128
    assert specs["learning_rate"].doc == "The initial learning rate for Adam."


@pytest.mark.parametrize("command,module,cls,required", [
    ("classify", "bertdetr.bert.finetuning.classifier", "ClassifierConfig",
     ["--task-name", "MRPC", "--data-dir", "d", "--output-dir", "o"]),
    ("squad", "bertdetr.bert.finetuning.squad", "SquadConfig", ["--output-dir", "o"]),
])
def test_finetune_options_are_the_config_fields_with_their_defaults(command, module, cls, required):
    import importlib

    config_class = getattr(importlib.import_module(module), cls)
    args = build_parser().parse_args(["bert", command, *required])
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            assert getattr(args, f.name) == f.default, f.name
    if command == "classify":
        assert args.task_name == "mrpc"  # lowercased before the choices, as before
    args = build_parser().parse_args(["bert", command, *required, "--train_batch_size", "4", "--learning_rate",
                                      "2e-5", "--nodo_lower_case", "--keep_checkpoint_max=0"])
    assert (args.train_batch_size, args.learning_rate, args.do_lower_case, args.keep_checkpoint_max) == (
        4, 2e-5, False, 0)


def test_finetune_config_validation_names_googles_flags(tmp_path):
    from bertdetr.bert.finetuning.squad import SquadConfig
    from bertdetr.errors import BertDetrError

    train = tmp_path / "train.json"
    train.write_text("{}")
    for bad, message in (({"train_batch_size": 0}, "--train_batch_size must be >= 1, got 0"),
                         ({"warmup_proportion": 1.5}, r"--warmup_proportion must be in \[0, 1\], got 1.5"),
                         ({"learning_rate": float("nan")}, "--learning_rate must be positive"),
                         ({"keep_checkpoint_max": -1}, "--keep_checkpoint_max must be >= 0"),
                         ({"n_best_size": 0}, "--n_best_size must be >= 1")):
        with pytest.raises(BertDetrError, match=message):
            SquadConfig(output_dir=str(tmp_path), do_train=True, train_file=str(train), **bad)


def test_building_the_command_line_imports_no_torch():
    # make-data, build-vocab and --help start fast: the parser reads the configs from source
    import subprocess
    import sys

    code = ("import sys; from bertdetr.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'bertdetr.bert.finetuning.classifier') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_classify_task_names_are_the_processors():
    from bertdetr.bert.finetuning.classifier import PROCESSORS
    from bertdetr.bert.cli import TASK_NAMES

    assert TASK_NAMES == (*PROCESSORS, "tsv")


def test_make_data_options_are_the_config_fields_with_their_defaults():
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig

    args = build_parser().parse_args(["bert", "make-data", "--input-file", "x", "--output-file", "o",
                                      "--vocab-file", "v"])
    assert {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainingDataConfig)} == \
        dataclasses.asdict(PretrainingDataConfig())
    args = build_parser().parse_args(["bert", "make-data", "--input_file", "x", "--output_file", "o",
                                      "--vocab_file", "v", "--dupe_factor=5", "--do_whole_word_mask=true",
                                      "--nodo_lower_case"])
    assert (args.dupe_factor, args.do_whole_word_mask, args.do_lower_case) == (5, True, False)


def test_python_dash_m_runs_the_command_with_its_exit_status(tmp_path):
    """``python -m bertdetr`` is the ``bertdetr`` script (a venv whose bin/ is not on PATH); a
    refused command exits non-zero there too."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "bertdetr", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("bertdetr ")
    bad = subprocess.run([sys.executable, "-m", "bertdetr", "bert", "fill-mask", "--model", str(tmp_path / "none"),
                          "a [MASK]"], capture_output=True, text=True)
    assert bad.returncode != 0 and "model directory not found" in bad.stderr
