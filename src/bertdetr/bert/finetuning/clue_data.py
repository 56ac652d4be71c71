"""The Chinese classification tasks of the CLUE benchmark, read as CLUE's own baseline reads them.

CLUE's baseline (``CLUEbenchmark/CLUE``, ``baselines/models/classifier_utils.py``) is Google's
``run_classifier.py`` with one ``DataProcessor`` per task; its processors are here under their
names, each making the examples CLUE's makes (guid, texts, label, the test set's dummy label: checked
against goldens made by CLUE's own file, ``tests/data/bert/clue/make_goldens.py``). OCNLI, which
replaced CMNLI on CLUE 1.1's leaderboard, has a processor only in CLUE's PyTorch baseline
(``baselines/models_pytorch/classifier_pytorch/processors/clue.py``): ``OcnliProcessor`` is that
one. Features are Google's (``classifier_data.convert_single_example``); the metric is accuracy for
every task, as CLUE scores them.

**Files** (``--data-dir``): ``train.json``, ``dev.json``, ``test.json``, one JSON object a line, as
CLUE distributes them (``tnews_public.zip`` and the others). Fields read:

========  ==========================================  =========================================
task      text_a / text_b                             labels
========  ==========================================  =========================================
afqmc     ``sentence1`` / ``sentence2``               "0", "1"
tnews     ``sentence`` (not its ``keywords``)         "100" .. "116" without "105", "111"
iflytek   ``sentence``                                "0" .. "118"
cmnli     ``sentence1`` / ``sentence2``               contradiction, entailment, neutral
ocnli     ``sentence1`` / ``sentence2``               contradiction, entailment, neutral
csl       ``keyword`` joined by spaces / ``abst``     "0", "1"
wsc       ``text`` with ``_query_`` and ``[pronoun]``   "true", "false"
========  ==========================================  =========================================

CMNLI and OCNLI drop examples labelled ``-`` (annotators disagreed), as CLUE's. Where CLUE's code
would stop with a ``KeyError``, an ``AssertionError`` or a JSON traceback, this raises
``BertDetrError`` naming the file and line. Labels may be JSON strings (CLUE's files) or integers
(CLUE's PyTorch baseline reads them with ``str``; its TF one would fail on them).
"""

from __future__ import annotations

from bertdetr.bert.data.tokenization import convert_to_unicode
from bertdetr.bert.finetuning.classifier_data import DataProcessor, InputExample
from bertdetr.errors import BertDetrError
from bertdetr.fileio import read_json_lines

__all__ = ["ClueProcessor", "TnewsProcessor", "iFLYTEKDataProcessor", "AFQMCProcessor", "CMNLIProcessor",
           "OcnliProcessor", "CslProcessor", "WSCProcessor", "CLUE_PROCESSORS", "mark_wsc_spans"]


def _field(obj: dict, name: str, where: str, kind: type | tuple[type, ...] = str):
    """``obj[name]``, which must be of ``kind``: else an error naming the line and what it has."""
    if name not in obj:
        raise BertDetrError(f"{where}: no {name!r} field (the line has {', '.join(map(repr, obj)) or 'none'})")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BertDetrError(f"{where}: {name!r} is {value!r}, expected {getattr(kind, '__name__', 'a string')}")
    return value


def _label(obj: dict, where: str) -> str:
    """The line's label as text: CLUE's files give strings, its PyTorch baseline takes ints by ``str``."""
    return convert_to_unicode(str(_field(obj, "label", where, (str, int))))


class ClueProcessor(DataProcessor):
    """Base of CLUE's processors: ``train.json``, ``dev.json``, ``test.json`` read a JSON object a
    line; each task says which fields are its texts (``_texts``) and its labels. The test set is
    labelled ``test_label`` (None: the first label), as CLUE's processors label it."""

    train_file = "train.json"
    dev_file = "dev.json"
    test_file = "test.json"
    test_label: str | None = None
    """The dummy label of test examples (None: the task's first label)."""
    first_index = 0
    """The guid number of the first line (CLUE's TF CMNLI counts from 1)."""
    drop_label: str | None = None
    """Lines with this label are skipped (the NLI sets' "-": annotators disagreed)."""

    @classmethod
    def _read_file(cls, input_file: str) -> list[tuple[int, dict]]:
        return read_json_lines(input_file)

    def _texts(self, line: dict, where: str) -> tuple[str, str | None]:
        raise NotImplementedError

    def _create_examples(self, lines, set_type, input_file):
        examples = []
        test_label = self.test_label or self.get_labels()[0]
        # guids number every line, skipped ones too, as CLUE's enumerate does
        for i, (n, line) in enumerate(lines, self.first_index):
            where = f"{input_file}:{n}"
            label = _label(line, where) if set_type != "test" else test_label
            text_a, text_b = self._texts(line, where)
            if self.drop_label is not None and label.strip() == self.drop_label:
                continue
            examples.append(InputExample(guid=f"{set_type}-{i}", text_a=convert_to_unicode(text_a),
                                         text_b=None if text_b is None else convert_to_unicode(text_b),
                                         label=label, source=where))
        return examples


class TnewsProcessor(ClueProcessor):
    """TNEWS' (Toutiao news titles, 15 classes); its ``keywords`` are not read, as CLUE's."""

    def get_labels(self) -> list[str]:
        # Codes 100-116: 105 and 111 have no news in the data set.
        return [str(100 + i) for i in range(17) if i not in (5, 11)]

    def _texts(self, line, where):
        return _field(line, "sentence", where), None


class iFLYTEKDataProcessor(TnewsProcessor):  # noqa: N801 - CLUE's name
    """IFLYTEK' (app descriptions, 119 classes)."""

    def get_labels(self) -> list[str]:
        return [str(i) for i in range(119)]


class AFQMCProcessor(ClueProcessor):
    """AFQMC (Ant Financial question matching): do two questions ask the same?"""

    def get_labels(self) -> list[str]:
        return ["0", "1"]

    def _texts(self, line, where):
        return _field(line, "sentence1", where), _field(line, "sentence2", where)


class CMNLIProcessor(AFQMCProcessor):
    """CMNLI (MultiNLI and XNLI in Chinese): entailment, neutral or contradiction."""

    test_label = "neutral"
    first_index = 1
    drop_label = "-"

    def get_labels(self) -> list[str]:
        return ["contradiction", "entailment", "neutral"]


class OcnliProcessor(CMNLIProcessor):
    """OCNLI (original Chinese NLI; CLUE 1.1's NLI task), from CLUE's PyTorch baseline."""

    first_index = 0


class CslProcessor(AFQMCProcessor):
    """CSL (keywords of a paper's abstract: all real, or some forged?): the keywords joined by
    spaces, then the abstract."""

    def _texts(self, line, where):
        keywords = _field(line, "keyword", where, list)
        if not all(isinstance(k, str) for k in keywords):
            raise BertDetrError(f"{where}: 'keyword' must be a list of strings, got {keywords!r}")
        return " ".join(keywords), _field(line, "abst", where)


def mark_wsc_spans(text: str, query: str, query_idx: int, pronoun: str, pronoun_idx: int) -> str:
    """CLUEWSC's one text: the candidate noun between underscores, the pronoun in brackets
    (``这时候放在_床_上枕头旁边的手机响了，...，现在[它]突然响了。``). The marks go in one
    character at a time at CLUE's positions, so overlapping spans come out as CLUE's do."""
    chars = list(text)
    if pronoun_idx > query_idx:
        chars.insert(query_idx, "_")
        chars.insert(query_idx + len(query) + 1, "_")
        chars.insert(pronoun_idx + 2, "[")
        chars.insert(pronoun_idx + len(pronoun) + 2 + 1, "]")
    else:
        chars.insert(pronoun_idx, "[")
        chars.insert(pronoun_idx + len(pronoun) + 1, "]")
        chars.insert(query_idx + 2, "_")
        chars.insert(query_idx + len(query) + 2 + 1, "_")
    return "".join(chars)


class WSCProcessor(ClueProcessor):
    """CLUEWSC2020 (Winograd schema: does the pronoun ``span2`` refer to the noun ``span1``?)."""

    def get_labels(self) -> list[str]:
        return ["true", "false"]

    def _texts(self, line, where):
        text = _field(line, "text", where)
        target = _field(line, "target", where, dict)
        spans = {}
        for span in ("span1", "span2"):
            words = _field(target, f"{span}_text", f"{where}, target")
            index = _field(target, f"{span}_index", f"{where}, target", int)
            if text[index:index + len(words)] != words:
                raise BertDetrError(f"{where}: target {span}_text {words!r} is not at {span}_index {index} "
                                    f"of the text (it has {text[index:index + len(words)]!r} there)")
            spans[span] = (words, index)
        return mark_wsc_spans(text, *spans["span1"], *spans["span2"]), None


CLUE_PROCESSORS = {"afqmc": AFQMCProcessor, "tnews": TnewsProcessor, "iflytek": iFLYTEKDataProcessor,
                   "cmnli": CMNLIProcessor, "ocnli": OcnliProcessor, "csl": CslProcessor, "wsc": WSCProcessor}
"""CLUE's ``processors`` of its ``run_classifier.py`` (with OCNLI of its PyTorch baseline)."""
