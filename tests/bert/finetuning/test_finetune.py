"""The fine-tuning commands' run folders: each kind of run keeps to its own folder."""

import json

import pytest

from bertdetr.bert.finetuning.finetune import run_checkpoint
from bertdetr.errors import BertDetrError
from bertdetr.training.folder import BERT_PRETRAIN, prepare_run_folder, run_kind


def _folder(tmp_path, name, content):
    d = tmp_path / name
    d.mkdir()
    for file, value in content.items():
        (d / file).write_text(json.dumps(value))
    return str(d)


def test_fine_tuning_refuses_another_kind_of_run(tmp_path):
    pretrain = _folder(tmp_path, "pretrain", {"train_config.json": {"run": BERT_PRETRAIN}})
    classify = _folder(tmp_path, "classify", {"classify_config.json": {"task_name": "mrpc"}})
    with pytest.raises(BertDetrError, match=r"holds a `bertdetr bert pretrain` run.*--init-checkpoint"):
        run_checkpoint(pretrain, do_train=True, resume=True, kind="bert classify")
    with pytest.raises(BertDetrError, match=r"holds a `bertdetr bert classify` run, not a `bertdetr bert squad`"):
        run_checkpoint(classify, do_train=False, resume=False, kind="bert squad")
    # its own folder (and a new one) are fine
    assert run_checkpoint(classify, do_train=True, resume=False, kind="bert classify") is None
    assert run_checkpoint(str(tmp_path / "new"), do_train=True, resume=False, kind="bert squad") is None


def test_trainers_do_not_take_a_fine_tuning_folder_for_their_own(tmp_path):
    # a classify run exports a BERT directory (model/vocab.txt), which alone would read as pretraining's
    squad = _folder(tmp_path, "squad", {"squad_config.json": {}})
    (tmp_path / "squad" / "model").mkdir()
    (tmp_path / "squad" / "model" / "vocab.txt").write_text("[PAD]\n")
    assert run_kind(squad) == "bert squad"
    with pytest.raises(BertDetrError, match="holds a `bertdetr bert squad` run"):
        prepare_run_folder(squad, BERT_PRETRAIN, resume=False, overwrite=True)
    assert (tmp_path / "squad" / "model" / "vocab.txt").exists()
