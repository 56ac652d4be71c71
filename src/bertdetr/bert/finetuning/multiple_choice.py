"""``bertdetr bert multiple-choice``: multiple choice, CLUE's C3 and CHID reading comprehension and
the BERT paper's SWAG, in the style of Google's ``run_classifier.py`` (its flags and outputs) with
what the tasks' baselines do (CLUE's ``run_c3.py``; ``run_multichoice_mrc.py`` for CHID, the idiom
cloze; transformers' ``run_swag.py``): each choice read with its text, a score per choice from the
pooled [CLS] vector, a softmax over a question's choices.

Read top to bottom: ``create_model`` (``bertdetr.bert.heads.BertForMultipleChoice``), training
(``finetune.train_labelled``: Google's optimizer and schedule, a question per example),
evaluation (accuracy), prediction, then the run. The data halves (files, features; CHID's
decoding) are ``multiple_choice_data`` (C3) and ``chid_data``.

Outputs in ``--output-dir``: ``train/eval/predict.tf_record`` (each question's rows of features,
flattened), checkpoints, ``eval_results.txt`` and ``eval_metrics.json`` (dev accuracy and loss),
``test_results.tsv`` (a line per test question: its choices' probabilities) and CLUE's answers:
for C3 ``submission_test.json`` (a JSON list of the chosen indexes, in the test files' order), for
CHID ``test_predictions.json`` (``{"#idiom000123#": index}``, and ``dev_predictions.json`` on the dev
set); the fine-tuned model in ``model/``, a transformers ``BertForMultipleChoice`` directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.data.records import serialize_example, write_record
from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning import chid_data
from bertdetr.bert.finetuning.classifier import write_test_results
from bertdetr.bert.finetuning.finetune import (FinetuneConfig, check_run_folder, eval_batches, features_output,
                                               labelled_checkpoint, schedule, setup, start_model, train_labelled)
from bertdetr.bert.finetuning.init_checkpoint import (build_tokenizer, model_files, read_hf_config,
                                                      read_init_checkpoint, resolve_start)
from bertdetr.bert.finetuning.multiple_choice_data import (c3_files, convert_swag_example, examples_to_tensors, read_c3,
                                                           read_swag, swag_file)
from bertdetr.bert.heads import BertForMultipleChoice
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.head_weights import load_multiple_choice_state
from bertdetr.errors import BertDetrError, require_at_least, require_field_types
from bertdetr.fileio import atomic_output, check_writable, write_json

__all__ = ["MultipleChoiceConfig", "run_multiple_choice", "create_model", "evaluate", "predict",
           "write_submission"]

SPLITS = {"train": "train", "eval": "dev", "predict": "test"}
"""The split each set reads (C3: ``c3-d-<split>.json``, ``c3-m-<split>.json``; CHID: ``<split>.json``)."""
TASK_DEFAULTS = {"c3": (512, 4), "chid": (64, 10), "swag": (128, 4)}
"""Each task's max_seq_length and number of choices by default (CLUE's baselines'; SWAG's sentences
are short: 128, where run_swag.py takes the model's 512)."""


def create_model(bert_config: BertConfig, num_choices: int, bert: BertModel | None = None) -> BertForMultipleChoice:
    """The multiple-choice head on ``bert`` (a new BertModel with Google's initialisation when None)."""
    return BertForMultipleChoice(bert if bert is not None else build_bert_model(bert_config), num_choices)


@dataclass(kw_only=True)
class MultipleChoiceConfig(FinetuneConfig):
    """``bertdetr bert multiple-choice``'s flags: those of Google's fine-tuning programs
    (``FinetuneConfig``), then these (CLUE's run_c3.py's where it has them)."""

    data_dir: str
    """The dir with the task's files: C3's c3-d-train.json and c3-m-train.json, likewise dev and test
    (or as CLUE's zip names them: d-train.json, m-train.json, ..., test1.1.json); CHID's train.json,
    train_answer.json, dev.json, dev_answer.json, test.json (or test1.1.json)."""
    task: str = "c3"
    """c3 (questions on a text, CLUE's run_c3.py), chid (idioms for blanks, CLUE's run_multichoice_mrc.py)
    or swag (the BERT paper's: which ending follows, transformers' run_swag.py; train.csv, val.csv, test.csv)."""
    max_seq_length: int | None = None
    """Word pieces per choice (C3: [CLS] document [SEP] question [SEP] choice [SEP], the longest cut
    first; CHID: [CLS] idiom [SEP] the text around the blank [SEP]); None: CLUE's, 512 for C3, 64 for CHID."""
    num_choices: int | None = None
    """Choices per question (C3: fewer are filled up with "无效答案"; CHID: candidates per line); None:
    CLUE's, 4 for C3, 10 for CHID."""
    do_eval: bool = False
    """Evaluate on the dev files (eval_results.txt, eval_metrics.json: accuracy; CHID also dev_predictions.json)."""
    do_predict: bool = False
    """Answer the test files (test_results.tsv: probabilities; CLUE's answers: C3 submission_test.json,
    CHID test_predictions.json)."""
    eval_batch_size: int = 8
    """Questions per batch for eval."""

    def __post_init__(self):
        require_field_types(self, "--")
        if not (self.do_train or self.do_eval or self.do_predict):
            raise BertDetrError("At least one of --do-train, --do-eval or --do-predict must be given.")
        if self.task not in TASK_DEFAULTS:
            raise BertDetrError(f"--task {self.task!r}: choose c3, chid or swag")
        default_length, default_choices = TASK_DEFAULTS[self.task]
        self.max_seq_length = default_length if self.max_seq_length is None else self.max_seq_length
        self.num_choices = default_choices if self.num_choices is None else self.num_choices
        super().__post_init__()
        require_at_least(self, ("eval_batch_size",), 1, "--")
        require_at_least(self, ("num_choices",), 2, "--")
        if self.max_seq_length < (8 if self.task == "chid" else 5):
            raise BertDetrError(f"--max-seq-length {self.max_seq_length} leaves no room for the task's "
                                "[CLS] ... [SEP] rows")
        if not os.path.isdir(self.data_dir):
            raise BertDetrError(f"data dir not found: {self.data_dir}")
        # a file only the task's own layout has, to say which --task a folder of the other wants
        marks = {"c3": ("c3-d-train.json", "d-train.json"), "chid": ("train_answer.json",), "swag": ("val.csv",)}
        if not any(os.path.isfile(os.path.join(self.data_dir, m)) for m in marks[self.task]):
            for other in marks:
                here = [m for m in marks[other] if os.path.isfile(os.path.join(self.data_dir, m))]
                if here:
                    raise BertDetrError(f"{self.data_dir} holds {other.upper()}'s files ({here[0]}), not "
                                        f"{self.task.upper()}'s: --task {other}")
        for wanted, name in ((self.do_train, "train"), (self.do_eval, "eval"), (self.do_predict, "predict")):
            if wanted and self.task == "c3":
                c3_files(self.data_dir, SPLITS[name])
            elif wanted and self.task == "swag":
                swag_file(self.data_dir, SPLITS[name])
            elif wanted:
                data, answers = chid_data.chid_files(self.data_dir, SPLITS[name])
                if answers is None and name != "predict":
                    raise BertDetrError(f"{self.data_dir} has {SPLITS[name]}.json but no {SPLITS[name]}_answer.json "
                                        f"(--do-{name} needs CHID's answers)")


def _init_model(config: MultipleChoiceConfig, bert_config: BertConfig) -> tuple[BertForMultipleChoice, bool]:
    """The model to fine-tune or evaluate, and whether its head was loaded (from a
    BertForMultipleChoice --init-checkpoint)."""
    model = create_model(bert_config, config.num_choices)
    if not config.init_checkpoint:
        return model, False
    state, source = read_init_checkpoint(config.init_checkpoint)
    return model, load_multiple_choice_state(model, state, source, read_hf_config(config.init_checkpoint))


@torch.no_grad()
def _probabilities(model: BertForMultipleChoice, data: dict[str, torch.Tensor], batch_size: int,
                   device: torch.device) -> tuple[np.ndarray, list[float]]:
    """Each question's choice probabilities [N, C] and each batch's mean loss."""
    was_training = model.training
    model.eval()
    probs, losses = [], []
    for batch in eval_batches(data, batch_size, device):
        out = model(**batch)
        probs.append(out["probabilities"].cpu().numpy())
        losses.append(float(out["loss"]))
    model.train(was_training)
    return (np.concatenate(probs) if probs else np.zeros((0, model.num_choices), np.float32)), losses


def evaluate(model: BertForMultipleChoice, data: dict[str, torch.Tensor], batch_size: int, device: torch.device,
             chid_examples: Sequence[chid_data.ChidExample] | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, probabilities): ``accuracy`` (questions whose most probable choice is right) and
    ``loss`` (the mean over questions of the cross-entropy, as CLUE's run_c3 averages batch means
    when batches are full). With ``chid_examples`` (CHID), ``accuracy`` is CLUE's: of the answers
    after each line's candidates are given out once (``chid_data.get_final_predictions``), which
    are ``predictions``; ``accuracy_argmax`` each blank's own best."""
    probabilities, losses = _probabilities(model, data, batch_size, device)
    labels = data["label_ids"].numpy()
    n = len(labels)
    right = int((probabilities.argmax(-1) == labels).sum()) if n else 0
    # per-question loss from the probabilities, so a short last batch weighs by its questions
    loss = float(-np.log(np.maximum(probabilities[np.arange(n), labels], 1e-30)).mean()) if n else 0.0
    metrics = {"accuracy": right / n if n else 0.0, "loss": loss, "num_examples": n}
    if chid_examples is not None:
        predictions = chid_data.get_final_predictions(chid_examples, probabilities)
        answers = {e.tag: e.answer_index for e in chid_examples}
        metrics.update(accuracy=chid_data.evaluate(answers, predictions), accuracy_argmax=metrics["accuracy"],
                       predictions=predictions)
    return metrics, probabilities


def predict(model: BertForMultipleChoice, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> np.ndarray:
    """Each question's choice probabilities [N, C] (float32), in the files' order."""
    return _probabilities(model, data, batch_size, device)[0]


def write_submission(path: str, probabilities: np.ndarray) -> None:
    """CLUE's ``submission_test.json``: a JSON list of each test question's chosen index (the order
    of the test files, dialogues first: "the test submission order can't be changed")."""
    with atomic_output(path, "w") as f:
        json.dump([int(i) for i in probabilities.argmax(-1)], f)


def write_chid_predictions(path: str, predictions: dict[str, int]) -> None:
    """CLUE's CHID answers (``write_predictions``): ``{"#idiom000123#": candidate index}``."""
    with atomic_output(path, "w") as f:
        json.dump(predictions, f, indent=2)


def _question_records(f, data: dict[str, torch.Tensor]) -> None:
    """Each question's features as one ``tf.train.Example``: its C rows flattened (C x T ints
    each), and its ``label_ids``."""
    for n in range(len(data["label_ids"])):
        write_record(f, serialize_example({k: v[n].reshape(-1).tolist() for k, v in data.items()}))


def _read_sets(config: MultipleChoiceConfig) -> dict[str, list]:
    sets = {}
    for wanted, name in ((config.do_train, "train"), (config.do_eval, "eval"), (config.do_predict, "predict")):
        if not wanted:
            continue
        if config.task == "c3":
            sets[name] = read_c3(c3_files(config.data_dir, SPLITS[name]), SPLITS[name], config.num_choices)
        elif config.task == "swag":
            sets[name] = read_swag(swag_file(config.data_dir, SPLITS[name]), SPLITS[name], config.num_choices)
        else:
            sets[name] = chid_data.read_chid_examples(*chid_data.chid_files(config.data_dir, SPLITS[name]))
        if not sets[name]:
            raise BertDetrError(f"the {config.task.upper()} {SPLITS[name]} files of {config.data_dir} have no questions")
    return sets


def _features(config: MultipleChoiceConfig, examples: list, tokenizer: FullTokenizer) -> dict[str, torch.Tensor]:
    if config.task == "c3":
        return examples_to_tensors(examples, config.max_seq_length, tokenizer)
    if config.task == "swag":
        return examples_to_tensors(examples, config.max_seq_length, tokenizer, convert_swag_example)
    return chid_data.convert_examples_to_features(examples, tokenizer, config.max_seq_length, config.num_choices)


def run_multiple_choice(config: MultipleChoiceConfig) -> dict:
    """Features for the requested sets (renamed into place only once every set converted), then
    training, evaluation and prediction. Returns a summary."""
    config = resolve_start(config)
    env, device = setup(config)
    bert_config, vocab_file = model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint,
                                          config.max_seq_length)
    sets = _read_sets(config)
    tokenizer = build_tokenizer(vocab_file, config.do_lower_case, config.init_checkpoint)
    check_writable(os.path.join(config.output_dir, "eval_results.txt"))
    check_run_folder(config.output_dir, "bert multiple-choice", env)  # before the features are written there
    labels = [str(k) for k in range(config.num_choices)]  # CLUE's c3Processor.get_labels
    chid = sets if config.task == "chid" else {}  # CHID's answers are decoded from its examples' blanks

    summary: dict = {"features": {}}
    data: dict[str, dict[str, torch.Tensor]] = {}
    with contextlib.ExitStack() as stack:
        for name, examples in sets.items():
            path = os.path.join(config.output_dir, f"{name}.tf_record")
            f = stack.enter_context(features_output(path, env))
            data[name] = _features(config, examples, tokenizer)
            _question_records(f, data[name])
            summary["features"][name] = (path, len(examples))
    if config.features_only:
        return summary

    num_train_steps, num_warmup_steps = schedule(len(sets["train"]), config, env, "questions") \
        if config.do_train else (0, 0)
    from_checkpoint = labelled_checkpoint(lambda ls: create_model(bert_config, len(ls)), labels, "choices")
    model, step, run = start_model(config, "bert multiple-choice", from_checkpoint,
                                   lambda: _init_model(config, bert_config),
                                   "evaluating a multiple-choice head", env, device)
    try:
        run.record_config({**asdict(config), "model": asdict(bert_config), "num_train_steps": num_train_steps,
                           "num_warmup_steps": num_warmup_steps})
        if config.do_train and not train_labelled(
                run, model, data["train"], config, device, num_train_steps, num_warmup_steps, "multiple-choice",
                vocab_file, summary, lambda m: _dev_scalars(config, m, data["eval"], chid.get("eval"), device)):
            return summary  # stopped early (--stop-at-step): resume to finish
        step = summary.setdefault("step", step)
        if not env.main:
            return summary  # the main process evaluates and predicts, over every question once
        if config.do_eval:
            summary["eval"] = _evaluate_and_write(config, model, data["eval"], chid.get("eval"), step, device)
        if config.do_predict:
            probabilities = predict(model, data["predict"], config.predict_batch_size, device)
            write_test_results(probabilities, os.path.join(config.output_dir, "test_results.tsv"))
            if config.task == "c3":
                write_submission(os.path.join(config.output_dir, "submission_test.json"), probabilities)
            elif config.task == "chid":
                write_chid_predictions(os.path.join(config.output_dir, "test_predictions.json"),
                                       chid_data.get_final_predictions(chid["predict"], probabilities))
            summary["predictions"] = len(probabilities)
        return summary
    finally:
        run.close()


def _dev_scalars(config: MultipleChoiceConfig, model: BertForMultipleChoice, data: dict[str, torch.Tensor],
                 chid_examples: list | None, device: torch.device) -> dict[str, float]:
    """The dev set's accuracy and loss, for ``--eval-every`` while training."""
    metrics, _ = evaluate(model, data, config.eval_batch_size, device, chid_examples)
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def _evaluate_and_write(config: MultipleChoiceConfig, model: BertForMultipleChoice, data: dict[str, torch.Tensor],
                        chid_examples: list | None, step: int, device: torch.device) -> dict:
    """``eval_results.txt`` (``key = value`` lines, as ``run_classifier.py``'s) and
    ``eval_metrics.json`` on the dev files; for CHID also ``dev_predictions.json`` (CLUE's)."""
    metrics, _ = evaluate(model, data, config.eval_batch_size, device, chid_examples)
    if chid_examples is not None:
        write_chid_predictions(os.path.join(config.output_dir, "dev_predictions.json"), metrics["predictions"])
    result = {"eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"], "global_step": step}
    with atomic_output(os.path.join(config.output_dir, "eval_results.txt"), "w") as f:
        for key in sorted(result):
            value = result[key] if key == "global_step" else np.float32(result[key])
            f.write(f"{key} = {value}\n")
    summary = {**result, "num_examples": metrics["num_examples"], "num_choices": config.num_choices,
               "task": config.task, "metric": "accuracy over questions"}
    if chid_examples is not None:
        summary.update(eval_accuracy_argmax=metrics["accuracy_argmax"],
                       metric="CLUE's CHID accuracy: each line's candidates given out once, by decreasing score")
    write_json(os.path.join(config.output_dir, "eval_metrics.json"), summary, indent=1)
    return summary
