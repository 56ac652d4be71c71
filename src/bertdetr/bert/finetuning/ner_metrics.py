"""Entity-level precision, recall and F1 of tag sequences, as CoNLL's ``conlleval`` counts them
(and ``seqeval.metrics`` in its default mode, whose function names these are).

An entity is a chunk (type, first token, last token) read from BIO or BIOES tags: a chunk starts
at ``B-``/``S-``, or at an ``I-``/``E-`` that cannot continue the chunk before it (after ``O``, after
``E-``/``S-``, or of another type), and ends where the next token cannot continue it. So an ``I-``
with no ``B-`` before it still opens an entity (conlleval's lenient reading, which the tests check
against seqeval on generated, also ill-formed, sequences). A prediction counts when its chunk
equals a gold chunk exactly. Sentences are joined with an ``O`` between them, as seqeval does.

Tags: ``O``, or a prefix ``B``, ``I``, ``E``, ``S`` then ``-`` and the type (``B-PER``). BMES's
``M-`` (a middle token, as Chinese NER sets such as ResumeNER are tagged) is read as ``I-``: seqeval
knows no ``M``, and its rules would end an entity at it.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["get_entities", "end_of_chunk", "start_of_chunk", "classification_report", "ner_metrics", "cluener_score"]


def _split(tag: str) -> tuple[str, str]:
    """(prefix, type): ``B-PER`` -> (``B``, ``PER``); ``O`` -> (``O``, ``_``), as seqeval reads them;
    ``M-PER`` -> (``I``, ``PER``)."""
    prefix = tag[:1]
    return "I" if prefix == "M" and tag[1:2] == "-" else prefix, tag[1:].split("-", maxsplit=1)[-1] or "_"


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether the chunk before this token ends before it."""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """Whether a chunk starts at this token."""
    if tag in ("B", "S"):
        return True
    if tag in ("E", "I") and prev_tag in ("E", "S", "O"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(seq: Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """The chunks (type, first, last) of a tag sequence, or of sentences joined with an ``O``
    between them (offsets then count those ``O``s too)."""
    if any(isinstance(s, (list, tuple)) for s in seq):
        seq = [tag for sentence in seq for tag in (*sentence, "O")]
    prev_tag, prev_type, begin = "O", "", 0
    chunks = []
    for i, chunk in enumerate([*seq, "O"]):
        tag, type_ = _split(chunk)
        if end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(correct: int, predicted: int, true: int) -> tuple[float, float, float]:
    """Precision, recall, F1; 0 where a denominator is 0 (seqeval's ``zero_division`` default)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def classification_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, dict]:
    """Per entity type: precision, recall, f1, support (gold entities), as seqeval's
    ``classification_report(output_dict=True)`` rows of the types."""
    true, pred = set(get_entities(y_true)), set(get_entities(y_pred))
    report = {}
    for type_ in sorted({t for t, _, _ in true | pred}):
        t = {e for e in true if e[0] == type_}
        p = {e for e in pred if e[0] == type_}
        precision, recall, f1 = _prf(len(t & p), len(p), len(t))
        report[type_] = {"precision": precision, "recall": recall, "f1": f1, "support": len(t)}
    return report


def ner_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict:
    """``precision``, ``recall``, ``f1`` (micro, over all entities: seqeval's ``precision_score``,
    ``recall_score``, ``f1_score``), ``accuracy`` (tokens whose tag is right: ``accuracy_score``)
    and ``per_type`` (``classification_report``). ``y_true``/``y_pred``: tags per sentence, same
    lengths."""
    if [len(s) for s in y_true] != [len(s) for s in y_pred]:
        raise ValueError("gold and predicted tags differ in length")
    true, pred = set(get_entities(y_true)), set(get_entities(y_pred))
    precision, recall, f1 = _prf(len(true & pred), len(pred), len(true))
    tokens = sum(len(s) for s in y_true)
    right = sum(t == p for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps))
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": right / tokens if tokens else 0.0,
            "num_entities": len(true), "num_predicted": len(pred),
            "per_type": classification_report(y_true, y_pred)}


def cluener_score(gold: Sequence[dict], pred: Sequence[dict], types: Sequence[str]) -> dict:
    """CLUENER2020's official score (its ``score.py``, ``get_f1_score``): per type, the F1 of the
    entity *texts* of each sentence (the keys of ``label[type]``: a text found twice in a sentence
    counts once, its offsets are not compared), and ``macro_f1``, their mean over ``types`` (CLUENER's
    ten). ``gold``/``pred``: each sentence's ``label`` ({type: {text: offsets}}; None: no entities).
    Where score.py divides by zero: a type predicted but never right gets F1 0, and a type with no
    entity in either is left out of the table and the mean (on CLUENER's data every type has some).
    Returns ``{"macro_f1", "per_type": {type: {"precision", "recall", "f1"}}}``."""
    if len(gold) != len(pred):
        raise ValueError("gold and predicted sentences differ in number")
    per_type = {}
    for type_ in types:
        tp = fp = fn = 0
        for g, p in zip(gold, pred):
            g_texts, p_texts = (g or {}).get(type_, {}).keys(), (p or {}).get(type_, {}).keys()
            tp += sum(t in g_texts for t in p_texts)
            fp += sum(t not in g_texts for t in p_texts)
            fn += sum(t not in p_texts for t in g_texts)
        if tp + fp + fn:
            precision, recall, f1 = _prf(tp, tp + fp, tp + fn)
            per_type[type_] = {"precision": precision, "recall": recall, "f1": f1}
    macro = sum(row["f1"] for row in per_type.values()) / len(per_type) if per_type else 0.0
    return {"macro_f1": macro, "per_type": per_type}
