"""``bertdetr bert squad``: Google's ``run_squad.py`` (SQuAD 1.1 and 2.0), its functions under its names.

Read top to bottom as Google's file, after its data half (``squad_data``: examples, windows,
features): ``create_model`` (the span head on the sequence output,
``bertdetr.bert.heads.BertForQuestionAnswering``), ``write_predictions`` (n-best spans,
``get_final_text``, the SQuAD 2.0 null answer), then the run that Google's ``main`` drives through
TPUEstimator. The official SQuAD scores are in ``bertdetr.bert.finetuning.squad_metrics``.

Predictions are Google's, checked against goldens made by bert-tensorflow 1.0.4 itself
(``tests/data/bert/squad/make_goldens.py``).
"""

from __future__ import annotations

import collections
import heapq
import math
import os
import random
import warnings
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch

from bertdetr.bert.data.tokenization import BasicTokenizer, FullTokenizer
from bertdetr.bert.finetuning.finetune import (FinetuneConfig, HOST, check_run_folder, features_output, finetune,
                                               schedule, setup, start_model)
from bertdetr.bert.finetuning.init_checkpoint import build_tokenizer, model_files, read_init_checkpoint, resolve_start
from bertdetr.bert.finetuning.cmrc_metrics import evaluate as cmrc_evaluate
from bertdetr.bert.finetuning.squad_data import (
    InputFeatures,
    SquadExample,
    SquadFile,
    check_window_settings,
    convert_examples_to_features,
    features_to_tensors,
    join_doc_tokens,
    load_squad_file,
    skipped_message,
    write_features,
    written_features,
)
from bertdetr.bert.finetuning.squad_metrics import squad_metrics
from bertdetr.bert.heads import BertForQuestionAnswering
from bertdetr.bert.model import BertConfig, BertModel, build_bert_model
from bertdetr.bert.head_weights import load_question_answering_state
from bertdetr.errors import BertDetrError, require_at_least, require_field_types
from bertdetr.fileio import check_writable, write_json
from bertdetr.training.distributed import Distributed


def create_model(bert_config: BertConfig, bert: BertModel | None = None) -> BertForQuestionAnswering:
    """Google's ``create_model`` as a module: the span head on ``bert`` (a new BertModel with
    Google's initialisation when None)."""
    return BertForQuestionAnswering(bert if bert is not None else build_bert_model(bert_config))


# ---- predictions ------------------------------------------------------------------------------


@dataclass
class RawResult:
    """The model's output for one feature (Google's ``RawResult``)."""

    unique_id: int
    """The feature's ``unique_id``."""
    start_logits: list[float]
    """[max_seq_length] start scores (padding positions included, as Google's)."""
    end_logits: list[float]
    """[max_seq_length] end scores."""


_PrelimPrediction = collections.namedtuple(
    "PrelimPrediction", ["feature_index", "start_index", "end_index", "start_logit", "end_logit"])
_NbestPrediction = collections.namedtuple("NbestPrediction", ["text", "start_logit", "end_logit"])


@dataclass
class SquadPredictions:
    """What ``write_predictions`` writes, by question id, in example order."""

    predictions: dict[str, str]
    """The answer text ("" for no answer, SQuAD 2.0)."""
    nbest: dict[str, list[dict]]
    """Up to ``n_best_size`` candidates: text, probability, start_logit, end_logit."""
    null_odds: dict[str, float]
    """SQuAD 2.0: null score minus the best non-null score (Google's null_odds.json); else empty."""


def compute_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[InputFeatures],
                        all_results: Iterable[RawResult], n_best_size: int, max_answer_length: int,
                        do_lower_case: bool, version_2_with_negative: bool = False,
                        null_score_diff_threshold: float = 0.0, verbose_logging: bool = False) -> SquadPredictions:
    """Google's ``write_predictions`` without the writing: for each example, the spans of the
    n-best start x n-best end positions of each of its windows that are valid (inside the
    document, at the token's max-context window, end >= start, at most ``max_answer_length``
    tokens), best by start + end logit, de-tokenised back to the paragraph's text
    (``get_final_text``); with SQuAD 2.0, "" when the smallest null score ([CLS] start + end, over
    the windows) beats the best span by more than ``null_score_diff_threshold``.

    Same numbers as Google's (the scores are added and the softmax computed in the same order).
    One difference: where Google crashes (SQuAD 2.0, no valid span in any window: its
    ``best_non_null_entry`` is None), the answer is "" and a nonce "empty" candidate with logits 0
    is added, as transformers' port of this function does."""
    example_index_to_features: dict[int, list[InputFeatures]] = collections.defaultdict(list)
    for feature in all_features:
        example_index_to_features[feature.example_index].append(feature)
    unique_id_to_result = {result.unique_id: result for result in all_results}
    out = SquadPredictions(collections.OrderedDict(), collections.OrderedDict(), collections.OrderedDict())
    basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)

    for example_index, example in enumerate(all_examples):
        features = example_index_to_features[example_index]
        prelim_predictions, null = _prelim_predictions(example, features, unique_id_to_result, n_best_size,
                                                       max_answer_length, version_2_with_negative)
        nbest = _nbest_predictions(example, features, prelim_predictions, n_best_size, do_lower_case,
                                   verbose_logging, basic_tokenizer)
        no_span = not any(entry.text for entry in nbest)
        if version_2_with_negative:
            if not any(entry.text == "" for entry in nbest):
                nbest.append(_NbestPrediction("", null.start_logit, null.end_logit))
            if no_span:  # Google would crash below (see the docstring)
                nbest.insert(0, _NbestPrediction("empty", 0.0, 0.0))
        # In very rare edge cases there is no valid prediction: a nonce one (Google's).
        if not nbest:
            nbest.append(_NbestPrediction("empty", 0.0, 0.0))

        total_scores = []
        best_non_null_entry = None
        for entry in nbest:
            total_scores.append(entry.start_logit + entry.end_logit)
            if not best_non_null_entry and entry.text:
                best_non_null_entry = entry
        probs = _compute_softmax(total_scores)
        nbest_json = []
        for i, entry in enumerate(nbest):
            nbest_json.append(collections.OrderedDict(
                [("text", entry.text), ("probability", probs[i]), ("start_logit", entry.start_logit),
                 ("end_logit", entry.end_logit)]))

        if not version_2_with_negative:
            out.predictions[example.qas_id] = nbest_json[0]["text"]
        else:
            # "" iff the null score - the score of the best non-null span > the threshold.
            score_null = null.start_logit + null.end_logit if null.found else 1000000
            score_diff = score_null - best_non_null_entry.start_logit - (best_non_null_entry.end_logit)
            out.null_odds[example.qas_id] = score_diff
            if no_span or score_diff > null_score_diff_threshold:
                out.predictions[example.qas_id] = ""
            else:
                out.predictions[example.qas_id] = best_non_null_entry.text
        out.nbest[example.qas_id] = nbest_json
    return out


@dataclass
class _NullScore:
    """SQuAD 2.0: the window with the smallest null score ([CLS] start + end logit)."""

    found: bool = False
    feature_index: int = 0
    start_logit: float = 0.0
    end_logit: float = 0.0


def _prelim_predictions(example: SquadExample, features: Sequence[InputFeatures], results: dict,
                        n_best_size: int, max_answer_length: int,
                        version_2_with_negative: bool) -> tuple[list, _NullScore]:
    """The first half of Google's loop for one example: the valid spans of the n-best starts x
    n-best ends of each window, best first, with (SQuAD 2.0) the null prediction of the window with
    the smallest null score among them."""
    prelim_predictions = []
    # The minimum null score (start + end logit of [CLS]) over the windows.
    score_null = 1000000  # large and positive
    null = _NullScore()
    for feature_index, feature in enumerate(features):
        result = results.get(feature.unique_id)
        if result is None:
            raise BertDetrError(f"no model output for feature {feature.unique_id} (question {example.qas_id})")
        start_indexes = _get_best_indexes(result.start_logits, n_best_size)
        end_indexes = _get_best_indexes(result.end_logits, n_best_size)
        if version_2_with_negative:
            feature_null_score = result.start_logits[0] + result.end_logits[0]
            if feature_null_score < score_null:
                score_null = feature_null_score
                null = _NullScore(True, feature_index, result.start_logits[0], result.end_logits[0])
        num_tokens = len(feature.tokens)
        to_orig, max_context = feature.token_to_orig_map, feature.token_is_max_context
        for start_index in start_indexes:
            # Invalid spans (in the question, in the padding, not at their max context) are
            # thrown out, as Google's.
            if start_index >= num_tokens or start_index not in to_orig or not max_context.get(start_index, False):
                continue
            for end_index in end_indexes:
                if end_index >= num_tokens or end_index not in to_orig or end_index < start_index:
                    continue
                if end_index - start_index + 1 > max_answer_length:
                    continue
                prelim_predictions.append(_PrelimPrediction(
                    feature_index, start_index, end_index, result.start_logits[start_index],
                    result.end_logits[end_index]))
    if version_2_with_negative:
        prelim_predictions.append(_PrelimPrediction(null.feature_index, 0, 0, null.start_logit, null.end_logit))
    # Google's order: its loops nest start over end; the sort is stable.
    return sorted(prelim_predictions, key=lambda x: (x.start_logit + x.end_logit), reverse=True), null


def _nbest_predictions(example: SquadExample, features: Sequence[InputFeatures], prelim_predictions: list,
                       n_best_size: int, do_lower_case: bool, verbose_logging: bool,
                       basic_tokenizer: BasicTokenizer) -> list:
    """The second half of Google's loop: the first ``n_best_size`` distinct answer texts of the
    preliminary spans, each de-tokenised back onto the paragraph (``get_final_text``); the null
    prediction is the text ""."""
    seen_predictions = {}
    nbest = []
    for pred in prelim_predictions:
        if len(nbest) >= n_best_size:
            break
        feature = features[pred.feature_index]
        if pred.start_index > 0:  # a non-null prediction
            tok_tokens = feature.tokens[pred.start_index:(pred.end_index + 1)]
            orig_doc_start = feature.token_to_orig_map[pred.start_index]
            orig_doc_end = feature.token_to_orig_map[pred.end_index]
            # De-tokenize WordPieces that have been split off, clean whitespace.
            tok_text = " ".join(tok_tokens).replace(" ##", "").replace("##", "")
            tok_text = " ".join(tok_text.strip().split())
            # Google's " ".join(orig_tokens), but no space inside CJK text (squad_data._words)
            orig_text = join_doc_tokens(example.doc_tokens, example.glued, orig_doc_start, orig_doc_end)
            final_text = get_final_text(tok_text, orig_text, do_lower_case, verbose_logging, basic_tokenizer)
            if final_text in seen_predictions:
                continue
            seen_predictions[final_text] = True
        else:
            final_text = ""
            seen_predictions[final_text] = True
        nbest.append(_NbestPrediction(final_text, pred.start_logit, pred.end_logit))
    return nbest


def write_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[InputFeatures],
                      all_results: Iterable[RawResult], n_best_size: int, max_answer_length: int,
                      do_lower_case: bool, output_prediction_file: str, output_nbest_file: str,
                      output_null_log_odds_file: str, version_2_with_negative: bool = False,
                      null_score_diff_threshold: float = 0.0, verbose_logging: bool = False) -> SquadPredictions:
    """Google's ``write_predictions``: ``compute_predictions``, written as Google writes them
    (``json.dumps(..., indent=4)`` and a newline; each file atomically): predictions.json,
    nbest_predictions.json and, for SQuAD 2.0, null_odds.json. Returns what it wrote."""
    out = compute_predictions(all_examples, all_features, all_results, n_best_size, max_answer_length, do_lower_case,
                              version_2_with_negative, null_score_diff_threshold, verbose_logging)
    files = [(output_prediction_file, out.predictions), (output_nbest_file, out.nbest)]
    if version_2_with_negative:
        files.append((output_null_log_odds_file, out.null_odds))
    for path, value in files:
        write_json(path, value, end="\n", indent=4)  # json.dumps(value, indent=4) as Google's, NaN refused
    return out


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    ns_chars = []
    ns_to_s_map = {}
    for i, c in enumerate(text):
        if c == " ":
            continue
        ns_to_s_map[len(ns_chars)] = i
        ns_chars.append(c)
    return "".join(ns_chars), ns_to_s_map


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool, verbose_logging: bool = False,
                   tokenizer: BasicTokenizer | None = None) -> str:
    """Google's: projects the tokenized prediction back onto the paragraph's own text.

    ``orig_text`` (the whitespace words the span came from) may hold more than the prediction
    ("Steve Smith's" for "steve smith"): it is tokenized with ``BasicTokenizer``, the prediction
    found in it, and, where both have the same characters once spaces are removed, mapped back
    character for character ("Steve Smith"). Where that fails, ``orig_text`` is returned. Google's
    heuristic kept as is, including its quirk of matching inside a word ("rie" of "Curie")."""
    tokenizer = tokenizer or BasicTokenizer(do_lower_case=do_lower_case)
    tok_text = " ".join(tokenizer.tokenize(orig_text))
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        if verbose_logging:
            warnings.warn(f"Unable to find text: {pred_text!r} in {orig_text!r}", stacklevel=2)
        return orig_text
    end_position = start_position + len(pred_text) - 1
    orig_ns_text, orig_ns_to_s_map = _strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s_map = _strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        if verbose_logging:
            warnings.warn(f"Length not equal after stripping spaces: {orig_ns_text!r} vs {tok_ns_text!r}",
                          stacklevel=2)
        return orig_text
    tok_s_to_ns_map = {tok_index: i for i, tok_index in tok_ns_to_s_map.items()}
    orig_start_position = None
    if start_position in tok_s_to_ns_map:
        orig_start_position = orig_ns_to_s_map.get(tok_s_to_ns_map[start_position])
    if orig_start_position is None:
        return orig_text
    orig_end_position = None
    if end_position in tok_s_to_ns_map:
        orig_end_position = orig_ns_to_s_map.get(tok_s_to_ns_map[end_position])
    if orig_end_position is None:
        return orig_text
    return orig_text[orig_start_position:(orig_end_position + 1)]


def _get_best_indexes(logits: Sequence[float], n_best_size: int) -> list[int]:
    """Google's: the indexes of the ``n_best_size`` largest logits, largest first, ties in index
    order (``heapq.nlargest`` is ``sorted(..., reverse=True)[:n]``, stable, without the full sort)."""
    return heapq.nlargest(n_best_size, range(len(logits)), key=logits.__getitem__)


def _compute_softmax(scores: Sequence[float]) -> list[float]:
    """Google's softmax over Python floats (its order of operations, so equal to the last bit)."""
    if not scores:
        return []
    max_score = max(scores)
    exp_scores = [math.exp(score - max_score) for score in scores]
    total_sum = 0.0
    for x in exp_scores:
        total_sum += x
    return [x / total_sum for x in exp_scores]


# ---- the run: Google's main -------------------------------------------------------------------


@dataclass(kw_only=True)
class SquadConfig(FinetuneConfig):
    """Google's ``run_squad.py`` flags (same names and defaults), plus this program's own; the ones
    ``run_classifier.py`` shares are ``FinetuneConfig``'s."""

    train_file: str | None = None
    """SQuAD json for training, e.g. train-v1.1.json."""
    predict_file: str | None = None
    """SQuAD json for predictions, e.g. dev-v1.1.json (scored when it has answers)."""
    max_seq_length: int = 384
    """Total input length after WordPiece tokenization: [CLS] question [SEP] window [SEP], padded."""
    doc_stride: int = 128
    """When splitting a long document into windows, how far each starts after the last."""
    max_query_length: int = 64
    """Questions longer than this many tokens are cut to it."""
    do_predict: bool = False
    """Predict answers for --predict-file (predictions.json, nbest_predictions.json, eval_metrics.json)."""
    n_best_size: int = 20
    """Candidates per question in nbest_predictions.json."""
    max_answer_length: int = 30
    """The longest answer (in tokens) that can be predicted."""
    verbose_logging: bool = False
    """Warn about every prediction whose text cannot be mapped back onto the paragraph."""
    version_2_with_negative: bool = False
    """SQuAD 2.0: some questions have no answer."""
    null_score_diff_threshold: float = 0.0
    """SQuAD 2.0: predict no answer if null_score - best_non_null is greater than this."""
    metric: str = "squad"
    """The scores in eval_metrics.json: squad (the official SQuAD v1.1/v2.0 EM and F1) or cmrc2018
    (the official CMRC 2018 EM and F1: mixed segmentation, for CMRC 2018 and DRCD)."""

    def __post_init__(self):
        require_field_types(self, "--")
        if not (self.do_train or self.do_predict):
            raise BertDetrError("At least one of --do-train or --do-predict must be given.")
        for wanted, path, flag in ((self.do_train, self.train_file, "--train-file"),
                                   (self.do_predict, self.predict_file, "--predict-file")):
            if wanted and not path:
                raise BertDetrError(f"{flag} is needed with --do-{'train' if flag == '--train-file' else 'predict'}")
            if wanted and not os.path.isfile(path):
                raise BertDetrError(f"{flag} not found: {path}")
        super().__post_init__()
        require_at_least(self, ("n_best_size", "max_answer_length"), 1, "--")
        if self.metric not in ("squad", "cmrc2018"):
            raise BertDetrError(f"--metric {self.metric!r}: choose squad or cmrc2018")
        check_window_settings(self.max_seq_length, self.doc_stride, self.max_query_length)


def _init_model(config: SquadConfig, bert_config: BertConfig) -> tuple[BertForQuestionAnswering, bool]:
    """The model to fine-tune or to predict with, from --init-checkpoint; and whether its span
    head was loaded."""
    model = create_model(bert_config)
    if not config.init_checkpoint:
        return model, False
    state, source = read_init_checkpoint(config.init_checkpoint)
    return model, load_question_answering_state(model, state, source)


def _batch(data: dict[str, torch.Tensor], index, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v[index].to(device=device, dtype=torch.long) for k, v in data.items() if k != "unique_ids"}


@torch.no_grad()
def predict(model: BertForQuestionAnswering, data: dict[str, torch.Tensor], batch_size: int,
            device: torch.device) -> list[RawResult]:
    """The start and end logits of every window (``RawResult``s, in order), at full length."""
    was_training = model.training
    model.eval()
    results = []
    n = len(data["input_ids"])
    for start in range(0, n, batch_size):
        index = slice(start, min(start + batch_size, n))
        out = model(**_batch(data, index, device))
        for uid, s, e in zip(data["unique_ids"][index].tolist(), out["start_logits"].float().cpu().tolist(),
                             out["end_logits"].float().cpu().tolist()):
            results.append(RawResult(uid, s, e))
    model.train(was_training)
    return results


def _not_scorable(dataset: list, version_2_with_negative: bool) -> str | None:
    """Why the questions cannot be scored (None when every one has gold answers to score against;
    in SQuAD 2.0 none is an answer too): a test set has no answers, and a question without them in
    a 1.1 file, or with answers of another layout, leaves the whole set unscored, as Google's."""
    questions = [qa for article in dataset for p in article["paragraphs"] for qa in p["qas"]]
    odd = [qa for qa in questions if not isinstance(qa.get("answers"), list) or not all(
        isinstance(a, dict) and isinstance(a.get("text"), str) for a in qa["answers"])]
    if not version_2_with_negative:
        odd += [qa for qa in questions if isinstance(qa.get("answers"), list) and not qa["answers"]]
    if not odd:
        return None
    if len(odd) == len(questions):
        return "its questions have no answers (a test set)"
    first = odd[0].get("id", "?")
    return (f"{len(odd)} of its {len(questions)} questions have no answers (the first: {first!r})"
            + ("" if version_2_with_negative else "; unanswerable questions are scored with --version-2-with-negative"))


def run_squad(config: SquadConfig) -> dict:
    """Google's ``main``: both SQuAD files read and checked, and their features written
    (train.tf_record, eval.tf_record), before any training; then training, prediction and the
    official scores. Returns a summary."""
    config = resolve_start(config)
    env, device = setup(config)
    bert_config, vocab_file = model_files(config.bert_config_file, config.vocab_file, config.init_checkpoint,
                                          config.max_seq_length)
    tokenizer = build_tokenizer(vocab_file, config.do_lower_case, config.init_checkpoint)
    check_writable(os.path.join(config.output_dir, "predictions.json"))
    check_run_folder(config.output_dir, "bert squad", env)  # before the features are written there
    summary: dict = {"features": {}}
    train_squad, predict_squad = _read_squad_files(config, summary, env)
    train_data, eval_features = _write_squad_features(config, tokenizer, train_squad, predict_squad, summary, env)
    if config.features_only:
        return summary

    def from_checkpoint(last: str, state: dict) -> BertForQuestionAnswering:
        model = create_model(bert_config)
        model.load_state_dict(state["model"])
        return model

    model, step, run = start_model(config, "bert squad", from_checkpoint, lambda: _init_model(config, bert_config),
                                   "predicting with a span head", env, device)
    try:
        if train_data is not None:
            # Google's step count: examples (not windows) / batch size x epochs.
            num_train_steps, num_warmup_steps = summary.pop("schedule")
            run.record_config({**asdict(config), "model": asdict(bert_config), "num_train_steps": num_train_steps,
                               "num_warmup_steps": num_warmup_steps})
            n = len(train_data["unique_ids"])
            step, export = finetune(run, model, lambda index: _batch(train_data, index, HOST), n, config, device,
                                    num_train_steps, num_warmup_steps, {"num_features": n}, "squad", vocab_file)
            summary.update(step=step, num_train_steps=num_train_steps)
            if export is None:
                return summary  # stopped early (--stop-at-step): resume to finish
            summary["export"] = export
        summary["step"] = step
        if eval_features is not None:  # (the main process's only: it predicts, every question once)
            summary.update(_predict_and_score(config, model, predict_squad, eval_features, device, step))
        return summary
    finally:
        run.close()


def _read_squad_files(config: SquadConfig, summary: dict, env: Distributed) -> tuple[SquadFile | None, SquadFile | None]:
    """The training and prediction files asked for, read and checked (``load_squad_file``); a
    training file must make at least one training step (its ``schedule`` goes into ``summary``)."""
    train_squad = predict_squad = None
    if config.do_train:
        train_squad = load_squad_file(config.train_file, True, config.version_2_with_negative)
        if train_squad.skipped:
            warnings.warn(skipped_message(train_squad), stacklevel=3)
        if not train_squad.examples:
            raise BertDetrError(f"{config.train_file} has no training examples")
        summary["skipped"] = len(train_squad.skipped)
        try:
            summary["schedule"] = schedule(len(train_squad.examples), config, env)  # examples, as Google counts
        except BertDetrError as e:
            raise BertDetrError(f"{config.train_file}: {e}") from None
    if config.do_predict:
        predict_squad = load_squad_file(config.predict_file, False, config.version_2_with_negative)
        if not predict_squad.examples:
            raise BertDetrError(f"{config.predict_file} has no questions")
    return train_squad, predict_squad


def _write_squad_features(config: SquadConfig, tokenizer: FullTokenizer, train_squad: SquadFile | None,
                          predict_squad: SquadFile | None, summary: dict, env: Distributed):
    """Google's features of each file, written as train.tf_record / eval.tf_record: the training
    windows as stacked tensors (``features_to_tensors``), the prediction windows as
    ``InputFeatures`` (``write_predictions`` needs their token maps)."""
    windows = (config.max_seq_length, config.doc_stride, config.max_query_length)
    train_data = eval_features = None
    if train_squad is not None:
        # Google pre-shuffles the training examples (random.Random(12345)) before writing them.
        train_examples = list(train_squad.examples)
        random.Random(12345).shuffle(train_examples)
        path = os.path.join(config.output_dir, "train.tf_record")
        with features_output(path, env) as f:
            # Kept as tensors only: SQuAD's training windows as InputFeatures would take GBs.
            train_data = features_to_tensors(written_features(
                convert_examples_to_features(train_examples, tokenizer, *windows, True), f, True), True)
        summary["features"]["train"] = (path, len(train_examples), len(train_data["unique_ids"]))
    if predict_squad is not None and env.main:  # only the main process predicts
        path = os.path.join(config.output_dir, "eval.tf_record")
        eval_features = write_features(convert_examples_to_features(predict_squad.examples, tokenizer, *windows,
                                                                    False), path, False)
        summary["features"]["eval"] = (path, len(predict_squad.examples), len(eval_features))
    return train_data, eval_features


def _predict_and_score(config: SquadConfig, model: BertForQuestionAnswering, predict_squad: SquadFile,
                       eval_features: list[InputFeatures], device: torch.device, step: int) -> dict:
    """Google's predictions files for the prediction set and, when it has answers, the official
    scores (``eval_metrics.json``); returns what goes into the run's summary."""
    results = predict(model, features_to_tensors(eval_features, False), config.predict_batch_size, device)
    out = write_predictions(
        predict_squad.examples, eval_features, results, config.n_best_size, config.max_answer_length,
        config.do_lower_case, *(os.path.join(config.output_dir, n) for n in
                                ("predictions.json", "nbest_predictions.json", "null_odds.json")),
        version_2_with_negative=config.version_2_with_negative,
        null_score_diff_threshold=config.null_score_diff_threshold, verbose_logging=config.verbose_logging)
    summary: dict = {"predictions": len(out.predictions)}
    metrics_file = os.path.join(config.output_dir, "eval_metrics.json")
    summary["not_scored"] = _not_scorable(predict_squad.dataset, config.version_2_with_negative)
    if summary["not_scored"] and os.path.exists(metrics_file):
        # an earlier run's scores beside this run's predictions would read as theirs
        os.remove(metrics_file)
        summary["not_scored"] += " (the folder's eval_metrics.json of an earlier prediction removed)"
    if not summary["not_scored"]:
        if config.metric == "cmrc2018":
            summary["metrics"] = {"metric": "cmrc2018", **cmrc_evaluate(predict_squad.dataset, out.predictions),
                                  "global_step": step}
        else:
            metrics = squad_metrics(predict_squad.dataset, out.predictions, out.null_odds or None,
                                    config.version_2_with_negative)
            summary["metrics"] = {"version": "2.0" if config.version_2_with_negative else "1.1", **metrics,
                                  "global_step": step}
        write_json(metrics_file, summary["metrics"], indent=1)
    return summary
