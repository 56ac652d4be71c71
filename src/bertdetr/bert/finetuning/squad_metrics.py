"""The official SQuAD scores: exact match (EM) and token F1, as the official evaluation scripts of
SQuAD v1.1 (``evaluate-v1.1.py``) and v2.0 (``evaluate-v2.0.py``) compute them, function for function.

Both normalise an answer the same way (lowercase; drop ASCII punctuation, the articles a/an/the,
extra whitespace) and take the best score over a question's gold answers. They differ where this
module keeps them apart:

- v1.1 (``evaluate_v1``): every question of the file counts (a missing prediction scores 0); F1 of
  an empty prediction is 0; keys ``exact_match`` and ``f1``.
- v2.0 (``evaluate_v2``): an unanswerable question's only gold answer is "" (F1 1 for an empty
  prediction, else 0); gold answers that normalise to nothing are dropped; questions without a
  prediction are left out of the total; with no-answer scores (``na_probs``, e.g. Google's
  ``null_odds.json``) a question is taken as answered "" where its score exceeds
  ``na_prob_thresh`` (default 1.0), and the best thresholds are searched (``best_exact``,
  ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh``); ``HasAns_*`` and ``NoAns_*`` split the
  scores by whether the question has an answer.
"""

from __future__ import annotations

import collections
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (both official scripts)."""
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


# ---- v1.1 -------------------------------------------------------------------------------------


def f1_score(prediction: str, ground_truth: str) -> float:
    """v1.1's token F1 (0 when either side is empty)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction: str, ground_truths: list[str]):
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def evaluate_v1(dataset: list, predictions: dict[str, str]) -> dict[str, float]:
    """``evaluate-v1.1.py``'s ``evaluate``: ``dataset`` is the SQuAD file's ``data``;
    ``{"exact_match": ..., "f1": ...}`` in percent. Every question needs an answer (v1.1 data)."""
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue  # the official script prints "Unanswered question ... will receive score 0."
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# ---- v2.0 -------------------------------------------------------------------------------------


def make_qid_to_has_ans(dataset: list) -> dict[str, bool]:
    return {qa["id"]: bool(qa["answers"]) for article in dataset for p in article["paragraphs"] for qa in p["qas"]}


def get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """v2.0's token F1: 1 if both are no-answer, 0 if only one is."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def get_raw_scores(dataset: list, preds: dict[str, str]) -> tuple[dict[str, int], dict[str, float]]:
    exact_scores, f1_scores = {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])]
                if not gold_answers:
                    gold_answers = [""]  # for unanswerable questions, the only correct answer is ""
                if qid not in preds:
                    continue  # the official script prints "Missing prediction for ..."
                a_pred = preds[qid]
                exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
                f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def apply_no_ans_threshold(scores: dict, na_probs: dict[str, float], qid_to_has_ans: dict[str, bool],
                           na_prob_thresh: float) -> dict[str, float]:
    new_scores = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def make_eval_dict(exact_scores: dict, f1_scores: dict, qid_list: list[str] | None = None) -> dict:
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict([("exact", 100.0 * sum(exact_scores.values()) / total),
                                        ("f1", 100.0 * sum(f1_scores.values()) / total), ("total", total)])
    total = len(qid_list)
    return collections.OrderedDict([("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
                                    ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total), ("total", total)])


def merge_eval(main_eval: dict, new_eval: dict, prefix: str) -> None:
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def find_best_thresh(preds: dict[str, str], scores: dict, na_probs: dict[str, float],
                     qid_to_has_ans: dict[str, bool]) -> tuple[float, float]:
    """The no-answer threshold that maximises the score, and that score: start with every
    question answered "" (all NoAns right), then lower the no-answer bar question by question."""
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(main_eval: dict, preds: dict[str, str], exact_raw: dict, f1_raw: dict,
                         na_probs: dict[str, float], qid_to_has_ans: dict[str, bool]) -> None:
    best_exact, exact_thresh = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def evaluate_v2(dataset: list, preds: dict[str, str], na_probs: dict[str, float] | None = None,
                na_prob_thresh: float = 1.0) -> dict:
    """``evaluate-v2.0.py``'s ``main`` (without its plots): ``dataset`` is the file's ``data``,
    ``na_probs`` its ``--na-prob-file`` (Google's README passes ``null_odds.json``)."""
    given = na_probs is not None
    if na_probs is None:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = make_qid_to_has_ans(dataset)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = get_raw_scores(dataset, preds)
    exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if given:
        find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return dict(out_eval)


def squad_metrics(dataset: list, predictions: dict[str, str], null_odds: dict[str, float] | None,
                  version_2_with_negative: bool) -> dict:
    """The official script of the version on the predictions: v2.0 with ``null_odds`` as its
    no-answer scores (as Google's README runs it), else v1.1."""
    if version_2_with_negative:
        return evaluate_v2(dataset, predictions, null_odds)
    return evaluate_v1(dataset, predictions)
