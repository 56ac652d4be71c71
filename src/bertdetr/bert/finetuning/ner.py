"""``bertdetr bert ner``: named entities (token classification), in the style of Google's
``run_classifier.py`` (its flags and outputs) with what transformers' ``run_ner.py`` does for the
task (Google released no NER program).

Read top to bottom: ``create_model`` (``bertdetr.bert.heads.BertForTokenClassification`` and its
loss), training (``finetune.train_labelled``: Google's optimizer and schedule, a window per
example), evaluation (entity-level
precision, recall and F1: ``ner_metrics``, equal to seqeval's), prediction, then the run.
The data half (CoNLL files, windows) is ``ner_data``.

Outputs in ``--output-dir``: ``train/eval/predict.tf_record`` (the windows' features),
checkpoints, ``eval_results.txt`` and ``eval_metrics.json`` (dev set), ``test_predictions.txt``
(a line per token: the token, its gold tag when the test file has one, the predicted tag; a blank
line between sentences) and the fine-tuned model in ``model/``, a transformers
``BertForTokenClassification`` directory. Data in CLUENER's layout (``--data-format cluener``) gets
CLUENER's outputs instead of ``test_predictions.txt``: ``cluener_predict.json`` (its submission lines,
``{"id", "label"}``) and, on the dev set, CLUENER's official score beside the entity-level one.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.data.records import serialize_example, write_record
from bertdetr.bert.finetuning.finetune import (FinetuneConfig, check_run_folder, eval_batches, features_output,
                                               labelled_checkpoint, schedule, setup, start_model, train_labelled)
from bertdetr.bert.finetuning.init_checkpoint import (build_tokenizer, model_files, read_hf_config,
                                                      read_init_checkpoint, resolve_start)
from bertdetr.bert.finetuning.ner_data import (IGNORE_INDEX, TAG_PATTERN, NerWindow, Sentence, bert_extract_item,
                                               cluener_label, get_label_list, get_span_labels, read_cluener,
                                               read_conll, sentence_windows, span_tensors, spans_to_tags,
                                               windows_to_tensors)
from bertdetr.bert.finetuning.ner_metrics import cluener_score, ner_metrics
from bertdetr.bert.heads import BertCrfForNer, BertForTokenClassification, BertSpanForNer, crf_sequences
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.head_weights import (SPAN_START_WEIGHT, has_crf, hf_weight_shapes, is_token_classifier,
                                        load_span_state, load_token_classifier_state, span_labels,
                                        token_classifier_labels)
from bertdetr.errors import BertDetrError, require_at_least, require_field_types
from bertdetr.fileio import atomic_output, check_writable, write_json
from bertdetr.training.checkpoint import latest_checkpoint, load_checkpoint

__all__ = ["NerConfig", "run_ner", "create_model", "evaluate", "predict_tags", "write_predictions",
           "write_cluener_predictions"]

SET_FILES = {"conll": {"train": ("train.txt", "train.char.bmes"), "eval": ("dev.txt", "dev.char.bmes"),
                       "predict": ("test.txt", "test.char.bmes")},
             "cluener": {"train": ("train.json",), "eval": ("dev.json",), "predict": ("test.json",)}}
"""The files each set may have in ``--data-dir``, per data format, the first found read: CoNLL's
``*.char.bmes`` are the names ResumeNER, OntoNotes 4 and MSRA come with from the Chinese NER papers'
releases (a character and its BMES tag a line), as CLUENER's ``CnerProcessor`` reads them (which
drops each file's first sentence: here it is read)."""


def set_file(data_dir: str, data_format: str, name: str) -> str | None:
    """The path of set ``name`` (train, eval, predict) in ``data_dir``, or None when it has none."""
    for file in SET_FILES[data_format][name]:
        if os.path.isfile(os.path.join(data_dir, file)):
            return os.path.join(data_dir, file)
    return None


HEADS = {"softmax": BertForTokenClassification, "crf": BertCrfForNer, "span": BertSpanForNer}
"""The heads ``bert ner`` trains: transformers' token classifier (CLUENER's BERT+softmax), and
CLUENER2020's BERT+CRF (``--crf``) and BERT+Span (``--span``)."""


def create_model(bert_config: BertConfig, labels: Sequence[str], bert: BertModel | None = None,
                 head: str = "softmax") -> BertForTokenClassification | BertSpanForNer:
    """The ``head`` (a key of ``HEADS``) on ``bert`` (a new BertModel with Google's initialisation
    when None); ``labels``: the tags, or for "span" "O" then the entity types."""
    return HEADS[head](bert if bert is not None else build_bert_model(bert_config), labels)


@dataclass(kw_only=True)
class NerConfig(FinetuneConfig):
    """``bertdetr bert ner``'s flags: those of Google's fine-tuning programs (``FinetuneConfig``),
    then these, named as ``run_classifier.py``'s."""

    data_dir: str
    """The dir with train.txt, dev.txt and test.txt in CoNLL layout (a token and its tag a line; or
    train.char.bmes, dev.char.bmes, test.char.bmes, ResumeNER's names), or train.json, dev.json and
    test.json in CLUENER's."""
    data_format: str = "auto"
    """conll, cluener (CLUENER2020's JSON lines: text and entity offsets), or auto: conll where
    --data-dir has the .txt files, else cluener where it has the .json ones."""
    max_seq_length: int = 128
    """Word pieces per window, [CLS] and [SEP] included; longer sentences are cut into windows."""
    do_eval: bool = False
    """Evaluate on dev.txt (eval_results.txt, eval_metrics.json: entity-level precision, recall, F1)."""
    do_predict: bool = False
    """Tag test.txt (test_predictions.txt: token, gold tag if the file has one, predicted tag), or
    test.json (cluener_predict.json: CLUENER's submission lines)."""
    eval_batch_size: int = 8
    """Total batch size for eval."""
    crf: bool = False
    """Score the tags with a linear-chain CRF and decode them by Viterbi (CLUENER2020's BERT+CRF
    baseline, BertCrfForNer; [CLS] and [SEP] tagged O in its chain); without training, the
    fine-tuned model's head decides."""
    span: bool = False
    """Entities as start and end pointers per token (CLUENER2020's BERT+Span baseline,
    BertSpanForNer, its soft labels); decoded as CLUENER's bert_extract_item, written as BIO tags;
    without training, the fine-tuned model's head decides."""
    crf_learning_rate: float = 1e-3
    """The learning rate of the CRF and the classifier under it with --crf (CLUENER's
    --crf_learning_rate, as its run_ner_crf.sh sets it); the rest of BERT gets --learning-rate."""

    def __post_init__(self):
        require_field_types(self, "--")
        if not (self.do_train or self.do_eval or self.do_predict):
            raise BertDetrError("At least one of --do-train, --do-eval or --do-predict must be given.")
        super().__post_init__()
        require_at_least(self, ("eval_batch_size",), 1, "--")
        if self.crf and self.span:
            raise BertDetrError("--crf and --span are two heads: choose one")
        if not self.crf_learning_rate > 0:
            raise BertDetrError(f"--crf-learning-rate must be positive, got {self.crf_learning_rate}")
        if self.max_seq_length < 3:
            raise BertDetrError(f"--max-seq-length {self.max_seq_length} leaves no room for [CLS] a word [SEP]")
        if not os.path.isdir(self.data_dir):
            raise BertDetrError(f"data dir not found: {self.data_dir}")
        if self.data_format not in ("auto", *SET_FILES):
            raise BertDetrError(f"--data-format {self.data_format!r}: choose auto, conll or cluener")
        wanted = [name for flag, name in ((self.do_train, "train"), (self.do_eval, "eval"),
                                          (self.do_predict, "predict")) if flag]
        if self.data_format == "auto":
            found = [f for f in SET_FILES if all(set_file(self.data_dir, f, name) for name in wanted)]
            self.data_format = found[0] if found else "conll"  # none found: say what conll wants
        for name in wanted:
            if not set_file(self.data_dir, self.data_format, name):
                other = "cluener" if self.data_format == "conll" else "conll"
                raise BertDetrError(f"{os.path.join(self.data_dir, SET_FILES[self.data_format][name][0])} not found "
                                    f"(--do-{name} reads {' or '.join(SET_FILES[self.data_format][name])} of "
                                    f"--data-dir; {other}'s layout: {SET_FILES[other][name][0]})")


def _kind(names) -> str:
    """The head (a key of ``HEADS``) whose weights these are."""
    return "span" if SPAN_START_WEIGHT in names else "crf" if has_crf(names) else "softmax"


def _checkpoint_head(config: NerConfig) -> tuple[list[str], str] | None:
    """Labels of a fine-tuned model to evaluate and its head (``HEADS``): output_dir's latest
    checkpoint or exported model, or an --init-checkpoint BertForTokenClassification (or
    BertSpanForNer) directory."""
    last = latest_checkpoint(config.output_dir)
    if last:
        state = load_checkpoint(last)
        return list(state["labels"]), _kind(state["model"])
    for d in (os.path.join(config.output_dir, "model"), config.init_checkpoint):
        shapes = hf_weight_shapes(d) if d and os.path.isfile(os.path.join(d, "config.json")) else {}
        if SPAN_START_WEIGHT in shapes:
            return span_labels(d, read_hf_config(d), shapes), "span"
        if is_token_classifier(read_hf_config(d), shapes):
            return token_classifier_labels(d, read_hf_config(d), shapes), _kind(shapes)
    return None


def _init_model(config: NerConfig, bert_config: BertConfig, labels: list[str],
                head: str) -> tuple[BertForTokenClassification | BertSpanForNer, bool]:
    """The model to fine-tune or evaluate, and whether its head was loaded (from a
    BertForTokenClassification --init-checkpoint with the same tags, in any order; its CRF too when
    both have one; a span head from a BertSpanForNer with the same labels)."""
    model = create_model(bert_config, labels, head=head)
    crf = head == "crf"
    if not config.init_checkpoint:
        return model, False
    state, source = read_init_checkpoint(config.init_checkpoint)
    hf_config = read_hf_config(config.init_checkpoint)
    if head == "span":
        loaded = load_span_state(model, state, source)
        ckpt_labels = span_labels(config.init_checkpoint, hf_config, state) if loaded else labels
        if ckpt_labels != labels:
            raise BertDetrError(f"{source} was fine-tuned for the span labels {ckpt_labels}, the data has {labels}")
        return model, loaded
    head_loaded = load_token_classifier_state(model, state, source, hf_config)
    ckpt_labels = token_classifier_labels(config.init_checkpoint, hf_config, state) if head_loaded else None
    if ckpt_labels and ckpt_labels != labels:
        if sorted(ckpt_labels) != sorted(labels):
            raise BertDetrError(f"{source} was fine-tuned for tags {ckpt_labels}, the data has {labels}")
        order = [ckpt_labels.index(label) for label in labels]
        with torch.no_grad():
            model.output_weights.copy_(model.output_weights[order].clone())
            model.output_bias.copy_(model.output_bias[order].clone())
            if crf and has_crf(state):
                for p in (model.crf.start_transitions, model.crf.end_transitions):
                    p.copy_(p[order].clone())
                model.crf.transitions.copy_(model.crf.transitions[order][:, order].clone())
    return model, head_loaded


@torch.no_grad()
def _window_predictions(model: BertForTokenClassification | BertSpanForNer, data: dict[str, torch.Tensor],
                        windows: Sequence[NerWindow], batch_size: int,
                        device: torch.device) -> tuple[list[list[str]], float, int]:
    """The predicted tags of every window's words (on the host): the argmax at each word's first
    piece, or with a CRF the best path (Viterbi), or a span head's spans (``bert_extract_item`` on
    the words' first pieces, as BIO tags); then the summed loss and what it is summed over (the
    labelled positions' cross-entropy; with a CRF each window's negative log-likelihood, tags the
    model lacks read as O there; a span head's batch loss times its windows)."""
    was_training = model.training
    model.eval()
    if isinstance(model, BertSpanForNer):
        return _span_predictions(model, data, windows, batch_size, device, was_training)
    crf = isinstance(model, BertCrfForNer)
    words, loss_sum, count = [], 0.0, 0
    for batch in eval_batches(data, batch_size, device):
        labels = batch.pop("label_ids")
        out = model(**batch)["logits"].float()
        if crf:
            best = model.decode(out, batch["tag_mask"]).cpu().numpy()  # words from 1 ([CLS] is 0)
            emissions, mask, tags = crf_sequences(out, batch["tag_mask"], labels, model.outside_id)
            if (labels != IGNORE_INDEX).any():
                loss_sum -= float(model.crf(emissions, tags, mask, reduction="sum"))
                count += len(labels)
        else:
            best = out.argmax(-1).cpu().numpy()
            real = labels != IGNORE_INDEX
            if real.any():
                loss_sum += float(torch.nn.functional.cross_entropy(out[real], labels[real], reduction="sum"))
                count += int(real.sum())
        for row in best:
            window = windows[len(words)]
            ids = row[1:1 + len(window.word_positions)] if crf else row[window.word_positions]
            words.append([model.labels[int(k)] for k in ids])
    model.train(was_training)
    return words, loss_sum, count


def _span_predictions(model: BertSpanForNer, data: dict[str, torch.Tensor], windows: Sequence[NerWindow],
                      batch_size: int, device: torch.device, was_training: bool) -> tuple[list[list[str]], float, int]:
    """``_window_predictions`` of a span head (in eval mode: its end layer reads the softmax of the
    start logits, as CLUENER's evaluation)."""
    words, loss_sum, count = [], 0.0, 0
    for batch in eval_batches(data, batch_size, device):
        out = model(**batch)
        if bool(batch["start_ids"].any()):
            loss_sum += float(out["loss"]) * len(batch["input_ids"])
            count += len(batch["input_ids"])
        starts, ends = out["start_logits"].argmax(-1).cpu().numpy(), out["end_logits"].argmax(-1).cpu().numpy()
        for s, e in zip(starts, ends):
            positions = windows[len(words)].word_positions
            words.append(spans_to_tags(bert_extract_item(s[positions], e[positions]), len(positions), model.labels))
    model.train(was_training)
    return words, loss_sum, count


def _tags_of(windows: Sequence[NerWindow], words: list[list[str]], sentences: Sequence[Sentence]) -> list[list[str]]:
    """Each sentence's predicted tags, its windows joined."""
    predicted: list[list[str]] = [[""] * len(s.words) for s in sentences]
    for window, tags in zip(windows, words):
        predicted[window.sentence][window.first_word:window.first_word + len(tags)] = tags
    return predicted


def predict_tags(model: BertForTokenClassification, data: dict[str, torch.Tensor], windows: Sequence[NerWindow],
                 sentences: Sequence[Sentence], batch_size: int, device: torch.device) -> list[list[str]]:
    """The predicted tags of every word of every sentence."""
    words, _, _ = _window_predictions(model, data, windows, batch_size, device)
    return _tags_of(windows, words, sentences)


def evaluate(model: BertForTokenClassification, data: dict[str, torch.Tensor], windows: Sequence[NerWindow],
             sentences: Sequence[Sentence], batch_size: int, device: torch.device) -> tuple[dict, list[list[str]]]:
    """(metrics, predicted tags): ``ner_metrics`` of the gold and predicted tags (entity-level
    precision, recall, F1 as seqeval's, token accuracy, per type) and ``loss``, the mean
    cross-entropy over the words whose gold tag the model has (with a CRF: the mean negative
    log-likelihood of a window's tags)."""
    words, loss_sum, count = _window_predictions(model, data, windows, batch_size, device)
    predicted = _tags_of(windows, words, sentences)
    metrics = ner_metrics([s.tags for s in sentences], predicted)
    metrics["loss"] = loss_sum / count if count else 0.0
    return metrics, predicted


def write_predictions(path: str, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """``test_predictions.txt``: CoNLL layout, a line per token (token, gold tag if any, predicted
    tag, space separated), a blank line after each sentence."""
    with atomic_output(path, "w") as f:
        for sentence, tags in zip(sentences, predicted):
            gold = sentence.tags or [None] * len(tags)
            for word, g, p in zip(sentence.words, gold, tags):
                f.write(f"{word} {p}\n" if g is None else f"{word} {g} {p}\n")
            f.write("\n")


def write_cluener_predictions(path: str, sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]) -> None:
    """``cluener_predict.json``: a JSON line per sentence, ``{"id": <its id>, "label": {type: {text:
    [[first, last]]}}}``, as CLUENER's baseline writes a submission (``test_submit.json``); the
    entities are read from the tags by ``get_entities`` (CLUENER's ``get_entity_bios`` drops an
    ``I-`` that follows no ``B-``, which ``get_entities`` reads as an entity: rare in predictions)."""
    with atomic_output(path, "w") as f:
        for sentence, tags in zip(sentences, predicted):
            label = cluener_label("".join(sentence.words), tags)
            f.write(json.dumps({"id": sentence.key, "label": label}, ensure_ascii=False) + "\n")


def _window_example(window: NerWindow, max_seq_length: int) -> bytes:
    """A window's features as a ``tf.train.Example`` (the layout of ``run_classifier.py``'s, with
    ``label_ids`` per position)."""
    n, pad = len(window.input_ids), max_seq_length - len(window.input_ids)
    return serialize_example({"input_ids": window.input_ids + [0] * pad, "input_mask": [1] * n + [0] * pad,
                              "segment_ids": [0] * max_seq_length,
                              "label_ids": window.label_ids + [IGNORE_INDEX] * pad})


def _read_sets(config: NerConfig) -> dict[str, list[Sentence]]:
    sets = {}
    read = read_cluener if config.data_format == "cluener" else read_conll
    for wanted, name in ((config.do_train, "train"), (config.do_eval, "eval"), (config.do_predict, "predict")):
        if wanted:
            path = set_file(config.data_dir, config.data_format, name)
            sets[name] = read(path, tags_required=name != "predict")
            if not sets[name]:
                raise BertDetrError(f"{path} has no sentences")
    return sets


def _head(config: NerConfig, sets: dict[str, list[Sentence]]) -> tuple[list[str], str]:
    """The labels and the head (``HEADS``): the training data's tags (with O, which a CRF tags [CLS]
    and [SEP] with; a span head's: O and the entity types) and --crf or --span, else the fine-tuned
    model's."""
    if config.do_train:
        if config.span:
            return get_span_labels(sets["train"]), "span"
        labels = get_label_list(sets["train"])
        return (sorted({*labels, "O"}), "crf") if config.crf else (labels, "softmax")
    head = _checkpoint_head(config)
    if head is None:
        raise BertDetrError("without --do-train the tags come from the fine-tuned model, but "
                            f"{config.output_dir} has no checkpoint and --init-checkpoint is no "
                            "BertForTokenClassification")
    asked = "crf" if config.crf else "span" if config.span else None
    if asked and head[1] != asked:
        warnings.warn(f"--{asked}: the fine-tuned model's head is another ({HEADS[head[1]].__name__}, trained "
                      f"without --{asked}); it is read as it is", stacklevel=2)
    return head


def _entity_type(label: str) -> str:
    """The type a label names: ``PER`` of ``B-PER`` (a span head's labels are the types themselves)."""
    return label[2:] if TAG_PATTERN.fullmatch(label) and label != "O" else label


def _warn_unknown_types(config: NerConfig, sets: dict[str, list[Sentence]], label_list: Sequence[str]) -> None:
    """Warns of entity types of the dev and test sets' gold tags that the model has no label for (a
    typo such as ``B-ORGX``, a type missing from training): accepted as they are, they can never be
    predicted and so lower the scores without a word."""
    known = {_entity_type(label) for label in label_list}
    for name in ("eval", "predict"):
        unknown = sorted({_entity_type(tag) for s in sets.get(name, ()) for tag in s.tags or () if tag != "O"} - known)
        if unknown:
            where = "the training data" if config.do_train else "the fine-tuned model's labels"
            warnings.warn(f"{set_file(config.data_dir, config.data_format, name)}: entity type(s) "
                          f"{', '.join(unknown)} not in {where}: never predicted, they count as missed entities "
                          "(a typo in a tag?)", stacklevel=3)


def run_ner(config: NerConfig) -> dict:
    """Features for the requested sets (renamed into place only once every set converted), then
    training, evaluation and prediction. Returns a summary."""
    config = resolve_start(config)
    env, device = setup(config)
    bert_config, vocab_file = model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint,
                                          config.max_seq_length)
    sets = _read_sets(config)
    label_list, head = _head(config, sets)
    _warn_unknown_types(config, sets, label_list)
    crf = head == "crf"
    label_map = {} if head == "span" else {label: i for i, label in enumerate(label_list)}
    tokenizer = build_tokenizer(vocab_file, config.do_lower_case, config.init_checkpoint)
    check_writable(os.path.join(config.output_dir, "eval_results.txt"))
    check_run_folder(config.output_dir, "bert ner", env)  # before the features are written there

    summary: dict = {"labels": label_list, "head": head, "features": {}}
    windows: dict[str, list[NerWindow]] = {}
    data: dict[str, dict[str, torch.Tensor]] = {}
    with contextlib.ExitStack() as stack:
        for name, sentences in sets.items():
            path = os.path.join(config.output_dir, f"{name}.tf_record")
            f = stack.enter_context(features_output(path, env))
            windows[name] = sentence_windows(sentences, tokenizer, label_map, config.max_seq_length)
            for window in windows[name]:
                write_record(f, _window_example(window, config.max_seq_length))
            data[name] = span_tensors(windows[name], sentences, label_list, config.max_seq_length) \
                if head == "span" else windows_to_tensors(windows[name], config.max_seq_length, tag_mask=crf)
            summary["features"][name] = (path, len(sentences), len(windows[name]))
    if config.features_only:
        return summary

    num_train_steps, num_warmup_steps = schedule(len(windows["train"]), config, env, "windows") \
        if config.do_train else (0, 0)
    from_checkpoint = labelled_checkpoint(lambda labels: create_model(bert_config, labels, head=head), label_list,
                                          "tags")
    model, step, run = start_model(config, "bert ner", from_checkpoint,
                                   lambda: _init_model(config, bert_config, list(label_list), head),
                                   "evaluating a token-classification head", env, device)
    try:
        run.record_config({**asdict(config), "model": asdict(bert_config), "labels": list(label_list),
                           "num_train_steps": num_train_steps, "num_warmup_steps": num_warmup_steps})
        if config.do_train and not train_labelled(
                run, model, data["train"], config, device, num_train_steps, num_warmup_steps, "ner", vocab_file,
                summary, lambda m: _dev_scalars(config, m, data["eval"], windows["eval"], sets["eval"], device),
                # CLUENER's groups: the CRF and the classifier under it at --crf-learning-rate
                {"crf.": config.crf_learning_rate, "output_": config.crf_learning_rate} if crf else None):
            return summary  # stopped early (--stop-at-step): resume to finish
        step = summary.setdefault("step", step)
        if not env.main:
            return summary  # the main process evaluates and predicts, over every sentence once
        if config.do_eval:
            summary["eval"] = _evaluate_and_write(config, model, data["eval"], windows["eval"], sets["eval"],
                                                  step, device)
        if config.do_predict:
            predicted = predict_tags(model, data["predict"], windows["predict"], sets["predict"],
                                     config.predict_batch_size, device)
            if config.data_format == "cluener":
                write_cluener_predictions(os.path.join(config.output_dir, "cluener_predict.json"), sets["predict"],
                                          predicted)
            else:
                write_predictions(os.path.join(config.output_dir, "test_predictions.txt"), sets["predict"],
                                  predicted)
            summary["predictions"] = len(predicted)
        return summary
    finally:
        run.close()


def _dev_scalars(config: NerConfig, model: BertForTokenClassification, data: dict[str, torch.Tensor],
                 windows: list[NerWindow], sentences: list[Sentence], device: torch.device) -> dict[str, float]:
    """The dev set's entity-level precision, recall, F1, token accuracy and loss, for
    ``--eval-every`` while training."""
    metrics, _ = evaluate(model, data, windows, sentences, config.eval_batch_size, device)
    return {k: metrics[k] for k in ("precision", "recall", "f1", "accuracy", "loss")}


def _evaluate_and_write(config: NerConfig, model: BertForTokenClassification, data: dict[str, torch.Tensor],
                        windows: list[NerWindow], sentences: list[Sentence], step: int, device: torch.device) -> dict:
    """``eval_results.txt`` (as ``run_classifier.py``'s: ``key = value`` lines) and
    ``eval_metrics.json`` (the same and the per-type report) on the dev set."""
    metrics, predicted = evaluate(model, data, windows, sentences, config.eval_batch_size, device)
    result = {"eval_precision": metrics["precision"], "eval_recall": metrics["recall"], "eval_f1": metrics["f1"],
              "eval_accuracy": metrics["accuracy"], "eval_loss": metrics["loss"], "global_step": step}
    cluener = None
    if config.data_format == "cluener":
        # (a CLUENER checkpoint's tags include X, [START] and [END], which name no type; a span head's are types)
        types = model.labels[1:] if isinstance(model, BertSpanForNer) else \
            sorted({label.split("-", 1)[1] for label in model.labels if "-" in label})
        cluener = cluener_score([s.entities for s in sentences],
                                [cluener_label("".join(s.words), tags) for s, tags in zip(sentences, predicted)], types)
        result["eval_cluener_macro_f1"] = cluener["macro_f1"]
    with atomic_output(os.path.join(config.output_dir, "eval_results.txt"), "w") as f:
        for key in sorted(result):
            value = result[key] if key == "global_step" else np.float32(result[key])
            f.write(f"{key} = {value}\n")
    summary = {**result, "per_type": metrics["per_type"], "num_entities": metrics["num_entities"],
               "num_predicted": metrics["num_predicted"], "num_sentences": len(sentences),
               "metric": "entity-level, seqeval default mode (conlleval)"}
    if cluener is not None:
        summary["cluener"] = {**cluener, "metric": "CLUENER2020's score.py: per type F1 of entity texts, their mean"}
    write_json(os.path.join(config.output_dir, "eval_metrics.json"), summary, indent=1)
    return summary
