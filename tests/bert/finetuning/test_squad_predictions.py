"""write_predictions against Google's own (bert-tensorflow 1.0.4) for fixed logits, byte for byte, and
the SQuAD scores against the official evaluation scripts' logic."""

import collections
import gzip
import json
import random
import re
import string

import pytest

from bertdetr.bert.finetuning import squad, squad_data, squad_metrics
from bertdetr.bert.data.tokenization import FullTokenizer
from tests.conftest import DATA

SQUAD = DATA / "bert" / "squad"
SETTINGS = {"384": (384, 128, 64), "64": (64, 24, 16)}


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(str(DATA / "bert" / "vocab-uncased.txt"), do_lower_case=True)


def _gz_text(name: str) -> str:
    with gzip.open(SQUAD / "golden" / name, "rt", encoding="utf-8") as f:
        return f.read()


def _inputs(tokenizer, name, setting):
    read = squad_data.load_squad_file(str(SQUAD / f"{name}.json"), False, name.endswith("v2.0"))
    features = list(squad_data.convert_examples_to_features(read.examples, tokenizer, *SETTINGS[setting], False))
    logits = json.loads(_gz_text(f"{name}-{setting}.logits.json.gz"))
    results = [squad.RawResult(int(k), v[0], v[1]) for k, v in logits.items()]
    return read, features, results


@pytest.mark.parametrize("name, setting, threshold", [
    ("dev-v1.1", "384", None), ("dev-v1.1", "64", None), ("dev-v2.0", "384", 0.0), ("dev-v2.0", "384", -10.0),
    ("dev-v2.0", "64", 0.0), ("dev-v2.0", "64", -10.0)])
def test_write_predictions_equals_googles_files(tokenizer, tmp_path, name, setting, threshold):
    case = f"{name}-{setting}" + ("" if threshold is None else f"-t{threshold}")
    v2 = name.endswith("v2.0")
    read, features, results = _inputs(tokenizer, name, setting)
    paths = [str(tmp_path / n) for n in ("predictions.json", "nbest_predictions.json", "null_odds.json")]
    out = squad.write_predictions(read.examples, features, results, 20, 30, True, *paths,
                                  version_2_with_negative=v2, null_score_diff_threshold=threshold or 0.0)
    golden = SQUAD / "golden"
    assert (tmp_path / "predictions.json").read_text() == (golden / f"{case}.predictions.json").read_text()
    assert (tmp_path / "nbest_predictions.json").read_text() == _gz_text(f"{case}.nbest_predictions.json.gz")
    if v2:
        assert (tmp_path / "null_odds.json").read_text() == (golden / f"{case}.null_odds.json").read_text()
        assert ("" in out.predictions.values()) == (threshold == -10.0 or setting == "384")
    else:
        assert not (tmp_path / "null_odds.json").exists()
    # Full n-best lists (SQuAD 2.0: 21 where Google appends "" to 20 spans).
    assert max(len(v) for v in out.nbest.values()) == (21 if v2 else 20)


def test_goldens_cover_googles_quirks(tokenizer):
    read, features, results = _inputs(tokenizer, "dev-v1.1", "384")
    out = squad.compute_predictions(read.examples, features, results, 20, 30, True)
    assert out.predictions["elec-2"] == "empty"  # no valid span in the n-best: Google's nonce
    assert out.predictions["tea-1"] == "\u8336"
    assert out.predictions["tea-3"] == "Today\u00a0Yunnan"  # a no-break space is inside a whitespace word


def test_get_final_text_examples():
    assert squad.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
    assert squad.get_final_text("1895", "(1895-1943).", True) == "1895"
    assert squad.get_final_text("te", "tê,", True) == "tê"
    assert squad.get_final_text("zzz", "Steve", True) == "Steve"  # not found: the original text


def test_get_best_indexes_and_softmax_are_googles():
    rng = random.Random(0)
    for _ in range(200):
        logits = [rng.choice([0.5, 1.0, -2.0, rng.random()]) for _ in range(rng.randint(0, 60))]
        google = [i for i, _ in sorted(enumerate(logits), key=lambda x: x[1], reverse=True)[:20]]
        assert squad._get_best_indexes(logits, 20) == google
    assert squad._compute_softmax([]) == []
    assert squad._compute_softmax([1.0, 1.0]) == [0.5, 0.5]


def test_v2_without_any_valid_span_predicts_no_answer():
    """Where Google crashes (no non-null candidate in SQuAD 2.0), the answer is ""."""
    example = squad_data.SquadExample("q", "Who?", ["Alice", "ran"])
    feature = squad_data.InputFeatures(1000000000, 0, 0, ["[CLS]", "who", "?", "[SEP]", "alice", "ran", "[SEP]"],
                                  {4: 0, 5: 1}, {4: True, 5: True}, [0] * 8, [1] * 7 + [0], [0] * 8)
    logits = [5.0, 4.0, 4.0, 4.0, -9.0, -9.0, 4.0, 4.0]
    end = [5.0, 4.0, 4.0, 4.0, -9.0, -9.0, 4.0, 4.0]
    out = squad.compute_predictions([example], [feature], [squad.RawResult(1000000000, logits, end)], 2, 30, True,
                                    version_2_with_negative=True)
    assert out.predictions == {"q": ""}
    assert [e["text"] for e in out.nbest["q"]] == ["empty", ""]


# ---- the official scores ----------------------------------------------------------------------
#
# The official scripts are not on PyPI (they are downloaded from the SQuAD site, which this
# machine cannot reach), so their logic is written out here again from the scripts' text
# (evaluate-v1.1.py and evaluate-v2.0.py), as literally as possible, as the oracle.


def official_normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r'\b(a|an|the)\b', re.UNICODE)
        return re.sub(regex, ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()
    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_v1(dataset, predictions):
    def f1(prediction, ground_truth):
        p, g = official_normalize_answer(prediction).split(), official_normalize_answer(ground_truth).split()
        same = sum((collections.Counter(p) & collections.Counter(g)).values())
        if same == 0:
            return 0
        precision, recall = same / len(p), same / len(g)
        return 2 * precision * recall / (precision + recall)

    def em(prediction, ground_truth):
        return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)

    f, e, total = 0, 0, 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    continue
                truths = [x['text'] for x in qa['answers']]
                e += max(em(predictions[qa['id']], t) for t in truths)
                f += max(f1(predictions[qa['id']], t) for t in truths)
    return {'exact_match': 100.0 * e / total, 'f1': 100.0 * f / total}


def official_v2(dataset, preds, na_probs):
    def tokens(s):
        return official_normalize_answer(s).split() if s else []

    def f1(a_gold, a_pred):
        g, p = tokens(a_gold), tokens(a_pred)
        same = sum((collections.Counter(g) & collections.Counter(p)).values())
        if len(g) == 0 or len(p) == 0:
            return int(g == p)
        if same == 0:
            return 0
        precision, recall = same / len(p), same / len(g)
        return 2 * precision * recall / (precision + recall)

    has_ans = {qa['id']: bool(qa['answers']) for a in dataset for p in a['paragraphs'] for qa in p['qas']}
    exact_raw, f1_raw = {}, {}
    for a in dataset:
        for p in a['paragraphs']:
            for qa in p['qas']:
                gold = [x['text'] for x in qa['answers'] if official_normalize_answer(x['text'])] or ['']
                if qa['id'] not in preds:
                    continue
                exact_raw[qa['id']] = max(int(official_normalize_answer(g) == official_normalize_answer(
                    preds[qa['id']])) for g in gold)
                f1_raw[qa['id']] = max(f1(g, preds[qa['id']]) for g in gold)

    def thresh(scores):
        return {k: float(not has_ans[k]) if na_probs[k] > 1.0 else s for k, s in scores.items()}

    def summary(e, f, qids):
        return {'exact': 100.0 * sum(e[k] for k in qids) / len(qids), 'f1': 100.0 * sum(f[k] for k in qids) / len(qids),
                'total': len(qids)}

    e, f = thresh(exact_raw), thresh(f1_raw)
    out = summary(e, f, list(e))
    for prefix, qids in (('HasAns', [k for k, v in has_ans.items() if v]), ('NoAns', [k for k, v in has_ans.items() if not v])):
        if qids:
            out.update({f'{prefix}_{k}': v for k, v in summary(e, f, qids).items()})

    def best(scores):
        cur = best_score = sum(1 for k in has_ans if not has_ans[k])
        best_t = 0.0
        for qid in sorted(na_probs, key=lambda k: na_probs[k]):
            if qid not in scores:
                continue
            cur += scores[qid] if has_ans[qid] else (-1 if preds[qid] else 0)
            if cur > best_score:
                best_score, best_t = cur, na_probs[qid]
        return 100.0 * best_score / len(scores), best_t

    out['best_exact'], out['best_exact_thresh'] = best(exact_raw)
    out['best_f1'], out['best_f1_thresh'] = best(f1_raw)
    return out


def _dataset(name):
    with open(SQUAD / f"{name}.json", encoding="utf-8") as f:
        return json.load(f)["data"]


def _perturbed_predictions(dataset, rng):
    """Gold answers, some changed: articles, punctuation, case, extra words, empties, wrong answers."""
    preds = {}
    for a in dataset:
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                gold = rng.choice(qa["answers"])["text"] if qa["answers"] else ""
                choice = rng.randrange(7)
                preds[qa["id"]] = [gold, "The " + gold.upper() + ".", gold + " and more words", "",
                                   "an unrelated answer", " ".join(gold.split()[:1]), f"({gold})!"][choice]
    return preds


def test_official_normalisation_examples():
    assert squad_metrics.normalize_answer("The  Baker Street!") == "baker street"
    assert squad_metrics.normalize_answer("an apple, a pear; the end.") == "apple pear end"
    assert squad_metrics.normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert squad_metrics.normalize_answer("¥11.2 trillion") == "¥112 trillion"  # ASCII punctuation only
    assert squad_metrics.f1_score("", "") == 0 and squad_metrics.compute_f1("", "") == 1  # v1.1 vs v2.0


@pytest.mark.parametrize("seed", range(5))
def test_v1_scores_equal_the_official_scripts(seed):
    dataset = _dataset("dev-v1.1")
    preds = _perturbed_predictions(dataset, random.Random(seed))
    if seed == 4:
        del preds["holmes-1"]  # an unanswered question scores 0
    ours = squad_metrics.evaluate_v1(dataset, preds)
    assert ours == pytest.approx(official_v1(dataset, preds), abs=0, rel=0)
    assert 0 < ours["exact_match"] < 100


@pytest.mark.parametrize("seed", range(5))
def test_v2_scores_equal_the_official_scripts(seed):
    dataset = _dataset("dev-v2.0")
    rng = random.Random(seed)
    preds = _perturbed_predictions(dataset, rng)
    null_odds = {k: rng.choice([rng.uniform(-5, 5), 0.5, 2.0]) for k in preds}
    ours = squad_metrics.evaluate_v2(dataset, preds, null_odds)
    assert ours == official_v2(dataset, preds, null_odds)
    assert {"HasAns_exact", "NoAns_f1", "best_f1_thresh"} <= set(ours)


def test_golden_predictions_scored(tokenizer):
    """eval_metrics.json's numbers for Google's own predictions on the v2.0 goldens."""
    dataset = _dataset("dev-v2.0")
    golden = SQUAD / "golden"
    preds = json.loads((golden / "dev-v2.0-384-t0.0.predictions.json").read_text())
    odds = json.loads((golden / "dev-v2.0-384-t0.0.null_odds.json").read_text())
    assert squad_metrics.squad_metrics(dataset, preds, odds, True) == official_v2(dataset, preds, odds)
    preds1 = json.loads((golden / "dev-v1.1-384.predictions.json").read_text())
    assert squad_metrics.squad_metrics(_dataset("dev-v1.1"), preds1, None, False) == official_v1(
        _dataset("dev-v1.1"), preds1)
