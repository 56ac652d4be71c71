"""``bertdetr bert classify``: Google's ``run_classifier.py``, its functions under its names.

Read top to bottom as Google's file, after its data half (``classifier_data``: examples, processors,
features): ``create_model`` (the classification head on the pooled output,
``bertdetr.bert.heads.BertForSequenceClassification``, and its loss), the evaluation metrics, then
the run (training, evaluation, prediction) that Google's ``main`` drives through TPUEstimator.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.data.records import write_record
from bertdetr.bert.finetuning.classifier_data import PROCESSORS as GOOGLE_PROCESSORS
from bertdetr.bert.finetuning.classifier_data import (
    DataProcessor,
    TsvProcessor,
    XnliProcessor,
    convert_single_example,
    features_to_example,
    features_to_tensors,
)
from bertdetr.bert.finetuning.clue_data import CLUE_PROCESSORS
from bertdetr.bert.finetuning.finetune import (FinetuneConfig, check_run_folder, eval_batches, features_output,
                                               labelled_checkpoint, schedule, setup, start_model, train_labelled)
from bertdetr.bert.finetuning.init_checkpoint import build_tokenizer, model_files, read_init_checkpoint, resolve_start
from bertdetr.bert.heads import BertForSequenceClassification
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.head_weights import load_classifier_state
from bertdetr.bert.weights import read_labels
from bertdetr.errors import BertDetrError, require_at_least, require_field_types
from bertdetr.fileio import atomic_output, check_writable, write_json
from bertdetr.training.checkpoint import latest_checkpoint, load_checkpoint

PROCESSORS = {**GOOGLE_PROCESSORS, **CLUE_PROCESSORS}
"""Every task name and its processor: Google's GLUE tasks, then CLUE's Chinese ones (``clue_data``)."""


def create_model(bert_config: BertConfig, labels: Sequence[str], bert: BertModel | None = None
                 ) -> BertForSequenceClassification:
    """Google's ``create_model`` as a module: the classifier on ``bert`` (a new BertModel with
    Google's initialisation when None). Its forward returns Google's four outputs by name."""
    return BertForSequenceClassification(bert if bert is not None else build_bert_model(bert_config), labels)


# ---- metrics -----------------------------------------------------------------------------------


def metric_fn(per_example_loss: np.ndarray, label_ids: np.ndarray, predictions: np.ndarray,
              is_real_example: np.ndarray) -> dict[str, float]:
    """Google's eval metrics: ``eval_accuracy`` and ``eval_loss``, each weighted by
    ``is_real_example`` (so TPU padding examples do not count)."""
    w = is_real_example.astype(np.float64)
    total = max(w.sum(), 1e-12)
    return {"eval_accuracy": float((w * (predictions == label_ids)).sum() / total),
            "eval_loss": float((w * per_example_loss).sum() / total)}


def f1_score(label_ids: np.ndarray, predictions: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's MRPC metric; label "1" = paraphrase); 0 when undefined."""
    tp = int(((predictions == positive) & (label_ids == positive)).sum())
    fp = int(((predictions == positive) & (label_ids != positive)).sum())
    fn = int(((predictions != positive) & (label_ids == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(label_ids: np.ndarray, predictions: np.ndarray) -> float:
    """Matthews correlation of binary labels (GLUE's CoLA metric); 0 when a marginal is empty, as
    scikit-learn returns."""
    tp = float(((predictions == 1) & (label_ids == 1)).sum())
    tn = float(((predictions == 0) & (label_ids == 0)).sum())
    fp = float(((predictions == 1) & (label_ids == 0)).sum())
    fn = float(((predictions == 0) & (label_ids == 1)).sum())
    denom = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) ** 0.5
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def glue_metrics(task_name: str, label_ids: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """The GLUE leaderboard metric of each task: MRPC accuracy and F1, CoLA Matthews correlation,
    accuracy for MNLI (matched), XNLI, CLUE's tasks (as CLUE scores them) and a user's own task."""
    metrics = {"accuracy": float((label_ids == predictions).mean()) if len(label_ids) else 0.0}
    if task_name == "mrpc":
        metrics["f1"] = f1_score(label_ids, predictions)
    if task_name == "cola":
        metrics["matthews_corrcoef"] = matthews_corrcoef(label_ids, predictions)
    return metrics


# ---- the run: Google's main --------------------------------------------------------------------


@dataclass(kw_only=True)
class ClassifierConfig(FinetuneConfig):
    """Google's ``run_classifier.py`` flags (same names and defaults), plus this program's own; the
    ones ``run_squad.py`` shares are ``FinetuneConfig``'s."""

    task_name: str
    """cola, mnli, mrpc, xnli (Google's processors); afqmc, tnews, iflytek, cmnli, ocnli, csl, wsc (CLUE's
    Chinese tasks, their JSON files); or tsv (``TsvProcessor``: a user's own files)."""
    data_dir: str
    """The input data dir with the task's files: .tsv for GLUE, .json for CLUE; for tsv, train, dev and
    test as .tsv, .csv or .json/.jsonl (a JSON object a line)."""
    max_seq_length: int = 128
    """Total input length after WordPiece tokenization: longer inputs are cut, shorter padded."""
    do_eval: bool = False
    """Evaluate on the dev set (eval_results.txt, eval_metrics.json)."""
    do_predict: bool = False
    """Class probabilities for the test set (test_results.tsv; CLUE's tasks also <task>_predict.json)."""
    eval_batch_size: int = 8
    """Total batch size for eval."""
    text_a_column: str = "sentence"
    """tsv task: the column (a JSON file: the field) of the first text."""
    text_b_column: str | None = None
    """tsv task: the column of the second text (None: single-sentence task)."""
    label_column: str = "label"
    """tsv task: the column of the label."""
    xnli_language: str = "zh"
    """xnli task: the language trained and evaluated (Google fixes "zh")."""

    def __post_init__(self):
        require_field_types(self, "--")
        if self.task_name.lower() not in (*PROCESSORS, "tsv"):
            raise BertDetrError(f"Task not found: {self.task_name} (choose one of {', '.join(PROCESSORS)}, tsv)")
        self.task_name = self.task_name.lower()
        if not (self.do_train or self.do_eval or self.do_predict):
            raise BertDetrError("At least one of --do-train, --do-eval or --do-predict must be given.")
        super().__post_init__()
        require_at_least(self, ("eval_batch_size",), 1, "--")
        if self.max_seq_length < 3:
            raise BertDetrError(f"--max-seq-length {self.max_seq_length} leaves no room for [CLS] text [SEP]")
        if not os.path.isdir(self.data_dir):
            raise BertDetrError(f"data dir not found: {self.data_dir}")
        if not any(os.scandir(self.data_dir)):
            raise BertDetrError(f"data dir {self.data_dir} is empty: it needs the task's files "
                                "(train.tsv, dev.tsv, test.tsv for GLUE tasks; train.json, dev.json, "
                                "test.json for CLUE's)")


def make_processor(config: ClassifierConfig, labels: Sequence[str] | None = None) -> DataProcessor:
    if config.task_name == "tsv":
        return TsvProcessor(config.data_dir, config.text_a_column, config.text_b_column, config.label_column,
                            labels)
    if config.task_name == "xnli":
        return XnliProcessor(config.xnli_language)
    return PROCESSORS[config.task_name]()


def _model_files(config: ClassifierConfig) -> tuple[BertConfig, str]:
    """The model's BertConfig and vocab file, from the flags or beside --init-checkpoint."""
    return model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint, config.max_seq_length)


def _checkpoint_labels(config: ClassifierConfig) -> list[str] | None:
    """Label names of a fine-tuned model to evaluate: output_dir's latest checkpoint or exported
    model, or an --init-checkpoint BertForSequenceClassification directory."""
    last = latest_checkpoint(config.output_dir)
    if last:
        return list(load_checkpoint(last)["labels"])
    for d in (os.path.join(config.output_dir, "model"), config.init_checkpoint):
        labels = read_labels(d) if d and os.path.isdir(d) else None
        if labels:
            return labels
    return None


def _init_model(config: ClassifierConfig, bert_config: BertConfig, labels: list[str]) -> tuple[BertForSequenceClassification, bool]:
    """The model to fine-tune or evaluate, and whether its classifier head was loaded."""
    model = create_model(bert_config, labels)
    if not config.init_checkpoint:
        return model, False
    path = config.init_checkpoint
    state, source = read_init_checkpoint(path)
    head_loaded = load_classifier_state(model, state, source)
    if head_loaded and os.path.isdir(path):
        _align_head_labels(model, read_labels(path), source)
    return model, head_loaded


def _align_head_labels(model: BertForSequenceClassification, ckpt_labels: list[str] | None, source: str) -> None:
    """A fine-tuned head whose checkpoint names its labels in another order than the task (say a
    transformers MNLI model with entailment first) is permuted to the task's order; other names
    are an error. Unnamed labels (transformers' LABEL_i, or 0..K-1 as ``bert convert`` writes
    for Google's checkpoints, which have no names) are taken in the task's order."""
    if ckpt_labels is None or ckpt_labels == model.labels:
        return
    if ckpt_labels in ([f"LABEL_{i}" for i in range(len(ckpt_labels))], [str(i) for i in range(len(ckpt_labels))]):
        return
    if sorted(ckpt_labels) != sorted(model.labels):
        raise BertDetrError(f"{source} was fine-tuned for labels {ckpt_labels}, the task has {model.labels}")
    order = [ckpt_labels.index(label) for label in model.labels]
    with torch.no_grad():
        model.output_weights.copy_(model.output_weights[order].clone())
        model.output_bias.copy_(model.output_bias[order].clone())


@torch.no_grad()
def evaluate(model: BertForSequenceClassification, data: dict[str, torch.Tensor], batch_size: int,
             device: torch.device) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Google's evaluation: (metrics, predictions, probabilities). ``eval_accuracy`` and ``eval_loss``
    are Google's metric_fn (per example, weighted by is_real_example); ``loss`` is what Estimator
    adds: the mean over batches of each batch's mean loss."""
    was_training = model.training
    model.eval()
    losses, per_example, probs = [], [], []
    for batch in eval_batches(data, batch_size, device):
        out = model(**batch)
        losses.append(out["loss"].item())
        per_example.append(out["per_example_loss"].cpu().numpy())
        probs.append(out["probabilities"].cpu().numpy())
    model.train(was_training)
    probabilities = np.concatenate(probs) if probs else np.zeros((0, model.num_labels), np.float32)
    predictions = probabilities.argmax(-1)
    metrics = metric_fn(np.concatenate(per_example) if per_example else np.zeros(0), data["label_ids"].numpy(),
                        predictions, data["is_real_example"].numpy())
    metrics["loss"] = float(np.mean(losses)) if losses else 0.0
    return metrics, predictions, probabilities


@torch.no_grad()
def predict(model: BertForSequenceClassification, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> np.ndarray:
    """Class probabilities [N, K] (float32), in example order."""
    model.eval()
    probs = [model(**{k: v for k, v in b.items() if k != "label_ids"})["probabilities"].cpu().numpy()
             for b in eval_batches(data, batch_size, device)]
    return np.concatenate(probs) if probs else np.zeros((0, model.num_labels), np.float32)


def write_test_results(probabilities: np.ndarray, path: str) -> None:
    """Google's test_results.tsv: one line per example, its class probabilities tab-separated, each
    as ``str`` of a float32 (what Google's ``str(class_probability)`` of numpy's float32 prints)."""
    with atomic_output(path, "w") as f:
        for row in probabilities.astype(np.float32):
            f.write("\t".join(str(p) for p in row) + "\n")


def write_clue_predictions(probabilities: np.ndarray, label_list: Sequence[str], task_name: str, path: str) -> None:
    """CLUE's ``<task>_predict.json``, as its ``run_classifier.py`` writes it for a submission: a JSON
    object a line, ``{"id": i, "label": "<label>"}`` with ``i`` the test example's index (CLUE's
    test files number their lines so), and ``"label_desc": ""`` for TNEWS."""
    with atomic_output(path, "w") as f:
        for i, row in enumerate(probabilities):
            line = {"id": i, "label": str(label_list[int(row.argmax())])}
            if task_name == "tnews":
                line["label_desc"] = ""
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def run_classifier(config: ClassifierConfig) -> dict:
    """Google's ``main``: features for the requested sets (their records renamed into place only
    once every set converted), then training, evaluation and prediction. Returns a summary."""
    config = resolve_start(config)
    env, device = setup(config)
    bert_config, vocab_file = _model_files(config)
    labels = None
    if config.task_name == "tsv" and not config.do_train:
        labels = _checkpoint_labels(config)
        if labels is None:
            raise BertDetrError("task tsv without --do-train: the labels come from the fine-tuned model, but "
                                f"{config.output_dir} has no checkpoint and --init-checkpoint no id2label")
    processor = make_processor(config, labels)
    label_list = processor.get_labels()
    tokenizer = build_tokenizer(vocab_file, config.do_lower_case, config.init_checkpoint)
    check_writable(os.path.join(config.output_dir, "eval_results.txt"))
    check_run_folder(config.output_dir, "bert classify", env)  # before the features are written there

    examples = {}
    for wanted, name, get in ((config.do_train, "train", processor.get_train_examples),
                              (config.do_eval, "eval", processor.get_dev_examples),
                              (config.do_predict, "predict", processor.get_test_examples)):
        if wanted:
            examples[name] = get(config.data_dir)
            if not examples[name]:
                raise BertDetrError(f"the {name} set of {config.data_dir} has no examples")
    # Each set's records are written as its features are made, all under temp names renamed only
    # when every set converted: a bad label in the test set leaves no train.tf_record behind.
    # On CPU/GPU Google writes the real examples only (PaddingInputExample is for TPU).
    summary: dict = {"labels": label_list, "features": {}}
    data: dict[str, dict[str, torch.Tensor]] = {}
    with contextlib.ExitStack() as stack:
        for name, exs in examples.items():
            path = os.path.join(config.output_dir, f"{name}.tf_record")
            f = stack.enter_context(features_output(path, env))
            data[name] = features_to_tensors(
                (convert_single_example(i, ex, label_list, config.max_seq_length, tokenizer)
                 for i, ex in enumerate(exs)),
                config.max_seq_length, write=lambda feature, f=f: write_record(f, features_to_example(feature)))
            summary["features"][name] = path
    if config.features_only:
        return summary

    num_train_steps, num_warmup_steps = schedule(len(examples["train"]), config, env) if config.do_train else (0, 0)
    from_checkpoint = labelled_checkpoint(lambda labels: create_model(bert_config, labels), label_list)
    model, step, run = start_model(config, "bert classify", from_checkpoint,
                                   lambda: _init_model(config, bert_config, list(label_list)),
                                   "evaluating a classifier head", env, device)
    try:
        run.record_config({**asdict(config), "model": asdict(bert_config), "labels": list(label_list),
                           "num_train_steps": num_train_steps, "num_warmup_steps": num_warmup_steps})
        if config.do_train and not train_labelled(run, model, data["train"], config, device, num_train_steps,
                                                  num_warmup_steps, "classify", vocab_file, summary,
                                                  lambda m: _dev_scalars(config, m, data["eval"], device)):
            return summary  # stopped early (--stop-at-step): resume to finish
        step = summary.setdefault("step", step)
        if not env.main:
            return summary  # the main process evaluates and predicts, over every example once
        if config.do_eval:
            summary["eval"] = _evaluate_and_write(config, model, data["eval"], step, device)
        if config.do_predict:
            probabilities = predict(model, data["predict"], config.predict_batch_size, device)
            write_test_results(probabilities, os.path.join(config.output_dir, "test_results.tsv"))
            if config.task_name in CLUE_PROCESSORS:
                write_clue_predictions(probabilities, label_list, config.task_name,
                                       os.path.join(config.output_dir, f"{config.task_name}_predict.json"))
            summary["predictions"] = len(probabilities)
        return summary
    finally:
        run.close()


def _dev_scalars(config: ClassifierConfig, model: BertForSequenceClassification, data: dict[str, torch.Tensor],
                 device: torch.device) -> dict[str, float]:
    """The dev set's loss and GLUE metric, for ``--eval-every`` while training."""
    metrics, predictions, _ = evaluate(model, data, config.eval_batch_size, device)
    return {"loss": metrics["eval_loss"], **glue_metrics(config.task_name, data["label_ids"].numpy(), predictions)}


def _evaluate_and_write(config: ClassifierConfig, model: BertForSequenceClassification, data: dict[str, torch.Tensor],
                        step: int, device: torch.device) -> dict:
    """Google's ``eval_results.txt`` and the task's GLUE metric (``eval_metrics.json``) on the dev set."""
    metrics, predictions, _ = evaluate(model, data, config.eval_batch_size, device)
    result = {"eval_accuracy": metrics["eval_accuracy"], "eval_loss": metrics["eval_loss"],
              "global_step": step, "loss": metrics["loss"]}
    with atomic_output(os.path.join(config.output_dir, "eval_results.txt"), "w") as f:
        # Google writes str() of Estimator's numpy values: float32 metrics, an int64 step.
        for key in sorted(result):
            value = result[key] if key == "global_step" else np.float32(result[key])
            f.write(f"{key} = {value}\n")
    glue = glue_metrics(config.task_name, data["label_ids"].numpy(), predictions)
    summary = {**result, **glue, "task": config.task_name, "num_examples": len(predictions)}
    write_json(os.path.join(config.output_dir, "eval_metrics.json"), summary, indent=1)
    return summary


__all__ = [
    "ClassifierConfig", "run_classifier", "evaluate", "predict", "metric_fn", "glue_metrics", "PROCESSORS",
    "write_clue_predictions",
    "f1_score", "matthews_corrcoef", "create_model",
]
