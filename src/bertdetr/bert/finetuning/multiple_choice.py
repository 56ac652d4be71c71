"""``bertdetr bert multiple-choice``: multiple-choice reading comprehension (C3), in the style of
Google's ``run_classifier.py`` (its flags and outputs) with what CLUE's C3 baseline
(``run_c3.py``) does for the task: each choice read with the document and the question, a score
per choice from the pooled [CLS] vector, a softmax over a question's choices.

Read top to bottom: ``create_model`` (``bertdetr.bert.heads.BertForMultipleChoice``), training
(``finetune.train_labelled``: Google's optimizer and schedule, a question per example),
evaluation (accuracy), prediction, then the run. The data half (C3's files, features) is
``multiple_choice_data``.

Outputs in ``--output-dir``: ``train/eval/predict.tf_record`` (each question's rows of features,
flattened), checkpoints, ``eval_results.txt`` and ``eval_metrics.json`` (dev accuracy and loss),
``test_results.tsv`` (a line per test question: its choices' probabilities) and
``submission_test.json`` (CLUE's: a JSON list of the chosen indexes, in the test files' order),
and the fine-tuned model in ``model/``, a transformers ``BertForMultipleChoice`` directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from bertdetr.bert.data.records import serialize_example, write_record
from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.finetuning.classifier import write_test_results
from bertdetr.bert.finetuning.finetune import (FinetuneConfig, eval_batches, features_output, labelled_checkpoint,
                                               model_files, read_hf_config, read_init_checkpoint, schedule, setup,
                                               start_model, train_labelled)
from bertdetr.bert.finetuning.multiple_choice_data import ChoiceExample, c3_files, examples_to_tensors, read_c3
from bertdetr.bert.heads import BertForMultipleChoice
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.weights import load_multiple_choice_state
from bertdetr.errors import BertDetrError, require_at_least, require_field_types
from bertdetr.fileio import atomic_output, check_writable, write_json

__all__ = ["MultipleChoiceConfig", "run_multiple_choice", "create_model", "evaluate", "predict",
           "write_submission"]

SPLITS = {"train": "train", "eval": "dev", "predict": "test"}
"""The C3 split each set reads (``c3-d-<split>.json``, ``c3-m-<split>.json``)."""


def create_model(bert_config: BertConfig, num_choices: int, bert: BertModel | None = None) -> BertForMultipleChoice:
    """The multiple-choice head on ``bert`` (a new BertModel with Google's initialisation when None)."""
    return BertForMultipleChoice(bert if bert is not None else build_bert_model(bert_config), num_choices)


@dataclass(kw_only=True)
class MultipleChoiceConfig(FinetuneConfig):
    """``bertdetr bert multiple-choice``'s flags: those of Google's fine-tuning programs
    (``FinetuneConfig``), then these (CLUE's run_c3.py's where it has them)."""

    data_dir: str
    """The dir with C3's files: c3-d-train.json and c3-m-train.json, likewise dev and test."""
    max_seq_length: int = 512
    """Word pieces per choice: [CLS] document [SEP] question [SEP] choice [SEP], the longest cut first."""
    num_choices: int = 4
    """Choices per question; questions with fewer are filled up with "无效答案" (CLUE's C3: 4)."""
    do_eval: bool = False
    """Evaluate on the dev files (eval_results.txt, eval_metrics.json: accuracy)."""
    do_predict: bool = False
    """Answer the test files (test_results.tsv: probabilities; submission_test.json: CLUE's answers)."""
    eval_batch_size: int = 8
    """Questions per batch for eval."""

    def __post_init__(self):
        require_field_types(self, "--")
        if not (self.do_train or self.do_eval or self.do_predict):
            raise BertDetrError("At least one of --do-train, --do-eval or --do-predict must be given.")
        super().__post_init__()
        require_at_least(self, ("eval_batch_size",), 1, "--")
        require_at_least(self, ("num_choices",), 2, "--")
        if self.max_seq_length < 5:
            raise BertDetrError(f"--max-seq-length {self.max_seq_length} leaves no room for [CLS] a [SEP] b [SEP] c [SEP]")
        if not os.path.isdir(self.data_dir):
            raise BertDetrError(f"data dir not found: {self.data_dir}")
        for wanted, name in ((self.do_train, "train"), (self.do_eval, "eval"), (self.do_predict, "predict")):
            if wanted:
                c3_files(self.data_dir, SPLITS[name])


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


def evaluate(model: BertForMultipleChoice, data: dict[str, torch.Tensor], batch_size: int,
             device: torch.device) -> tuple[dict[str, float], np.ndarray]:
    """(metrics, probabilities): ``accuracy`` (questions whose most probable choice is right) and
    ``loss`` (the mean over questions of the cross-entropy, as CLUE's run_c3 averages batch means
    when batches are full)."""
    probabilities, losses = _probabilities(model, data, batch_size, device)
    labels = data["label_ids"].numpy()
    n = len(labels)
    right = int((probabilities.argmax(-1) == labels).sum()) if n else 0
    # per-question loss from the probabilities, so a short last batch weighs by its questions
    loss = float(-np.log(np.maximum(probabilities[np.arange(n), labels], 1e-30)).mean()) if n else 0.0
    return {"accuracy": right / n if n else 0.0, "loss": loss, "num_examples": n}, probabilities


def predict(model: BertForMultipleChoice, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> np.ndarray:
    """Each question's choice probabilities [N, C] (float32), in the files' order."""
    return _probabilities(model, data, batch_size, device)[0]


def write_submission(path: str, probabilities: np.ndarray) -> None:
    """CLUE's ``submission_test.json``: a JSON list of each test question's chosen index (the order
    of the test files, dialogues first: "the test submission order can't be changed")."""
    with atomic_output(path, "w") as f:
        json.dump([int(i) for i in probabilities.argmax(-1)], f)


def _question_record(rows: dict[str, list]) -> bytes:
    """A question's features as one ``tf.train.Example``: its C rows flattened (C x T ints each)."""
    return serialize_example({k: [x for row in v for x in row] if k != "label_ids" else v for k, v in rows.items()})


def _read_sets(config: MultipleChoiceConfig) -> dict[str, list[ChoiceExample]]:
    sets = {}
    for wanted, name in ((config.do_train, "train"), (config.do_eval, "eval"), (config.do_predict, "predict")):
        if wanted:
            sets[name] = read_c3(c3_files(config.data_dir, SPLITS[name]), SPLITS[name], config.num_choices)
            if not sets[name]:
                raise BertDetrError(f"the C3 {SPLITS[name]} files of {config.data_dir} have no questions")
    return sets


def run_multiple_choice(config: MultipleChoiceConfig) -> dict:
    """Features for the requested sets (renamed into place only once every set converted), then
    training, evaluation and prediction. Returns a summary."""
    env, device = setup(config)
    bert_config, vocab_file = model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint,
                                          config.max_seq_length)
    sets = _read_sets(config)
    tokenizer = FullTokenizer(vocab_file, do_lower_case=config.do_lower_case)
    check_writable(os.path.join(config.output_dir, "eval_results.txt"))
    labels = [str(k) for k in range(config.num_choices)]  # CLUE's c3Processor.get_labels

    summary: dict = {"features": {}}
    data: dict[str, dict[str, torch.Tensor]] = {}
    with contextlib.ExitStack() as stack:
        for name, examples in sets.items():
            path = os.path.join(config.output_dir, f"{name}.tf_record")
            f = stack.enter_context(features_output(path, env))
            data[name] = examples_to_tensors(
                examples, config.max_seq_length, tokenizer,
                write=lambda rows, f=f: write_record(f, _question_record(rows)))
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
                vocab_file, summary, lambda m: _dev_scalars(config, m, data["eval"], device)):
            return summary  # stopped early (--stop-at-step): resume to finish
        step = summary.setdefault("step", step)
        if not env.main:
            return summary  # the main process evaluates and predicts, over every question once
        if config.do_eval:
            summary["eval"] = _evaluate_and_write(config, model, data["eval"], step, device)
        if config.do_predict:
            probabilities = predict(model, data["predict"], config.predict_batch_size, device)
            write_test_results(probabilities, os.path.join(config.output_dir, "test_results.tsv"))
            write_submission(os.path.join(config.output_dir, "submission_test.json"), probabilities)
            summary["predictions"] = len(probabilities)
        return summary
    finally:
        run.close()


def _dev_scalars(config: MultipleChoiceConfig, model: BertForMultipleChoice, data: dict[str, torch.Tensor],
                 device: torch.device) -> dict[str, float]:
    """The dev set's accuracy and loss, for ``--eval-every`` while training."""
    metrics, _ = evaluate(model, data, config.eval_batch_size, device)
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def _evaluate_and_write(config: MultipleChoiceConfig, model: BertForMultipleChoice, data: dict[str, torch.Tensor],
                        step: int, device: torch.device) -> dict:
    """``eval_results.txt`` (``key = value`` lines, as ``run_classifier.py``'s) and
    ``eval_metrics.json`` on the dev files."""
    metrics, _ = evaluate(model, data, config.eval_batch_size, device)
    result = {"eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"], "global_step": step}
    with atomic_output(os.path.join(config.output_dir, "eval_results.txt"), "w") as f:
        for key in sorted(result):
            value = result[key] if key == "global_step" else np.float32(result[key])
            f.write(f"{key} = {value}\n")
    summary = {**result, "num_examples": metrics["num_examples"], "num_choices": config.num_choices,
               "metric": "accuracy over questions"}
    write_json(os.path.join(config.output_dir, "eval_metrics.json"), summary, indent=1)
    return summary
