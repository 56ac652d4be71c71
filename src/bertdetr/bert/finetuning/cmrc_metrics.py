"""The official CMRC 2018 evaluation (``cmrc2018_evaluate.py``, v5, SQuAD-style data; also used for
DRCD), function for function: ``bert squad --metric cmrc2018``.

- **EM**: an answer equals the prediction once both are lower-cased, stripped and rid of the
  script's punctuation list (``remove_punctuation``).
- **F1**: both split by ``mixed_segmentation`` (each Chinese character a segment, the text between
  them split into words by nltk's tokenizer, punctuation dropped), then the longest common
  *substring* of the two segment lists (``find_lcs``) gives precision and recall; the best over the
  answers counts.
- Scores are percentages over every question of the dataset; a question with no prediction scores
  0 and is counted in ``SKIP``.

Quirks kept: the Chinese test is ``[\\u4e00-\\u9fa5]`` (not all of CJK); ``'……'`` in the punctuation
list is two characters, so it never matches one; and ``find_lcs`` runs over segments, not
characters. One departure: the script's ``nltk.word_tokenize`` first splits sentences with Punkt,
whose data needs a download; here each stretch of non-Chinese text goes to nltk's word tokenizer
as one sentence (``word_tokenize(..., preserve_line=True)``). The two differ only on a stretch of
several English sentences, where Punkt would also split off each sentence's final period.
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["mixed_segmentation", "remove_punctuation", "find_lcs", "calc_f1_score", "calc_em_score", "evaluate"]

SP_CHAR = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
           "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
           "「", "」", "（", "）", "－", "～", "『", "』"]
"""The script's punctuation (``sp_char``), as it lists it."""

_CHINESE = re.compile("[\u4e00-\u9fa5]")
_WORD_TOKENIZER = None


def _word_tokenize(text: str) -> list[str]:
    global _WORD_TOKENIZER
    if _WORD_TOKENIZER is None:
        from nltk.tokenize import NLTKWordTokenizer

        _WORD_TOKENIZER = NLTKWordTokenizer()
    return _WORD_TOKENIZER.tokenize(text)


def mixed_segmentation(in_str: str, rm_punc: bool = False) -> list[str]:
    """Chinese characters (and, unless ``rm_punc``, punctuation) as segments of their own, the text
    between them as nltk's words; lower-cased and stripped first."""
    in_str = str(in_str).lower().strip()
    segs_out: list[str] = []
    temp_str = ""
    for char in in_str:
        if rm_punc and char in SP_CHAR:
            continue
        if _CHINESE.search(char) or char in SP_CHAR:
            if temp_str != "":
                segs_out.extend(_word_tokenize(temp_str))
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(_word_tokenize(temp_str))
    return segs_out


def remove_punctuation(in_str: str) -> str:
    """``in_str`` lower-cased, stripped, without the script's punctuation."""
    return "".join(char for char in str(in_str).lower().strip() if char not in SP_CHAR)


def find_lcs(s1: Sequence[str], s2: Sequence[str]) -> tuple[Sequence[str], int]:
    """The longest common substring (contiguous run) of two sequences and its length; the first
    one found in ``s1``'s order on ties."""
    m = [[0] * (len(s2) + 1) for _ in range(len(s1) + 1)]
    mmax = 0
    p = 0
    for i in range(len(s1)):
        for j in range(len(s2)):
            if s1[i] == s2[j]:
                m[i + 1][j + 1] = m[i][j] + 1
                if m[i + 1][j + 1] > mmax:
                    mmax = m[i + 1][j + 1]
                    p = i + 1
    return s1[p - mmax:p], mmax


def calc_f1_score(answers: Sequence[str], prediction: str) -> float:
    """The best F1 of ``prediction`` over ``answers`` (fractions, not percentages)."""
    f1_scores = []
    for ans in answers:
        ans_segs = mixed_segmentation(ans, rm_punc=True)
        prediction_segs = mixed_segmentation(prediction, rm_punc=True)
        _, lcs_len = find_lcs(ans_segs, prediction_segs)
        if lcs_len == 0:
            f1_scores.append(0)
            continue
        precision = 1.0 * lcs_len / len(prediction_segs)
        recall = 1.0 * lcs_len / len(ans_segs)
        f1_scores.append((2 * precision * recall) / (precision + recall))
    return max(f1_scores)


def calc_em_score(answers: Sequence[str], prediction: str) -> int:
    """1 when ``prediction`` equals one of ``answers`` without punctuation, else 0."""
    prediction_ = remove_punctuation(prediction)
    return int(any(remove_punctuation(ans) == prediction_ for ans in answers))


def evaluate(dataset: list, predictions: dict[str, str]) -> dict[str, float | int]:
    """The script's output for a SQuAD-style ``dataset`` (the file's ``data``) and
    ``predictions`` (question id -> text): ``AVERAGE`` ((EM + F1) / 2), ``F1``, ``EM`` (percent),
    ``TOTAL`` (questions) and ``SKIP`` (questions without a prediction). The script prints its
    scores with 3 decimals; these are the unrounded values."""
    f1 = em = total_count = skip_count = 0
    for instance in dataset:
        for para in instance["paragraphs"]:
            for qas in para["qas"]:
                total_count += 1
                query_id = qas["id"].strip()
                answers = [x["text"] for x in qas["answers"]]
                if query_id not in predictions:
                    skip_count += 1
                    continue
                prediction = str(predictions[query_id])
                if not answers:
                    # an unanswerable question (SQuAD 2.0's layout, --version-2-with-negative): the
                    # script has none (its max() of no scores fails); scored as SQuAD 2.0's script
                    # scores one, right only when nothing is predicted
                    right = int(remove_punctuation(prediction) == "")
                    f1, em = f1 + right, em + right
                    continue
                f1 += calc_f1_score(answers, prediction)
                em += calc_em_score(answers, prediction)
    f1_score = 100.0 * f1 / total_count if total_count else 0.0
    em_score = 100.0 * em / total_count if total_count else 0.0
    return {"AVERAGE": (em_score + f1_score) * 0.5, "F1": f1_score, "EM": em_score, "TOTAL": total_count,
            "SKIP": skip_count}
