"""CHID (Chinese idioms cloze) for ``bertdetr bert multiple-choice --task chid``, as CLUE's baseline
prepares and decodes it (``CLUEbenchmark/CLUE``, ``baselines/models_pytorch/mrc_pytorch/
preprocess/CHID_preprocess.py``: ``read_chid_examples``, ``add_tokens_for_around``,
``convert_examples_to_features``, ``logits_matrix_to_array``, ``get_final_predictions``,
``evaluate``, under their names here); checked against goldens made by that file
(``tests/data/bert/chid/make_goldens.py``).

**Files** (``--data-dir``, CLUE's ``chid_public.zip``): ``train.json``, ``dev.json``, ``test.json`` (or the
zip's ``test1.1.json``, ``test1.0.json``), a
JSON object a line, ``{"candidates": [10 idioms], "content": [passage, ...]}``, each passage with
blanks ``#idiom000123#``; the answers in ``train_answer.json`` and ``dev_answer.json``
(``{"#idiom000123#": index of the right candidate}``).

**Examples**, one per blank (CLUE's): the passage's quotes and dashes made ASCII (“ ” to ", —— to
--, … to ...), then split into words as CLUE's reader splits it: every CJK character and CLUE's
punctuation a word, other characters (Latin, digits) run together, each blank one word.

**Features**, one row per candidate: ``[CLS] candidate [SEP] left [unused1] right [SEP]`` (segment 0
throughout, as CLUE's), ``left`` and ``right`` the word pieces around the blank (the other blanks
each four [MASK]), ``max_seq_length - 8`` of them centred on the blank where the passage allows
(``add_tokens_for_around``). Questions with fewer candidates than ``num_choices`` get all-zero rows.

**Answers**: the blanks of a line share its candidates, and CLUE's decoding gives each candidate
to at most one blank: the (candidate, blank) pairs in decreasing score, each taken when both are
free (``logits_matrix_to_array``). ``evaluate`` is CLUE's accuracy over the answer file's blanks.

Dimension letters: N blanks, C candidates, T sequence length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.errors import BertDetrError
from bertdetr.fileio import read_json_lines

__all__ = ["ChidExample", "read_chid_examples", "add_tokens_for_around", "convert_examples_to_features",
           "logits_matrix_to_array", "get_final_predictions", "evaluate", "chid_files"]

SPIECE_UNDERLINE = "▁"
"""CLUE's word separator while splitting a passage."""
_PUNCTUATION = set("。，！？；、：（）－~「《》,」\"“”$『』—;()-～‘’")
"""CLUE's ``is_fuhao``: punctuation that is a word of its own."""
_QUOTES = (("“", '"'), ("”", '"'), ("——", "--"), ("—", "-"), ("―", "-"), ("…", "..."), ("‘", "'"), ("’", "'"))


@dataclass
class ChidExample:
    """One blank of a passage (CLUE's ``ChidExample``)."""

    example_id: int
    """The line of the file it comes from (0-based): the blanks of a line share its candidates."""
    tag: str
    """The blank, ``#idiom000123#``."""
    doc_tokens: list[str]
    """The passage split into words (the blanks whole)."""
    options: list[str]
    """The line's candidate idioms."""
    answer_index: int | None = None
    """The right candidate's index (None: no answer file)."""


def chid_files(data_dir: str, split: str) -> tuple[str, str | None]:
    """``<split>.json`` and its answer file (None when there is none); for the test set, without a
    ``test.json``, the ``test1.1.json`` (CLUE 1.1's) or ``test1.0.json`` of CLUE's ``chid_public.zip``.
    A missing data file is an error."""
    names = [f"{split}.json", *(("test1.1.json", "test1.0.json") if split == "test" else ())]
    found = [os.path.join(data_dir, n) for n in names if os.path.isfile(os.path.join(data_dir, n))]
    if not found:
        raise BertDetrError(f"no CHID {split} file in {data_dir} (looked for {', '.join(names)})")
    answers = os.path.join(data_dir, f"{split}_answer.json")
    return found[0], answers if os.path.isfile(answers) else None


def _is_chinese_char(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def _tokenize_chinese_chars(text: str) -> str:
    """CLUE's: separators around each CJK character, CLUE's punctuation and each blank (a blank is
    ``#idiom`` and the 7 characters after it)."""
    output: list[str] = []
    in_blank = False
    for index, char in enumerate(text):
        if in_blank:
            output.append(char)
            if text[index - 12:index + 1].startswith("#idiom"):
                in_blank = False
                output.append(SPIECE_UNDERLINE)
        elif text[index:index + 6] == "#idiom":
            in_blank = True
            if output and output[-1] != SPIECE_UNDERLINE:
                output.append(SPIECE_UNDERLINE)
            output.append(char)
        elif _is_chinese_char(ord(char)) or char in _PUNCTUATION:
            if output and output[-1] != SPIECE_UNDERLINE:
                output.append(SPIECE_UNDERLINE)
            output.append(char)
            output.append(SPIECE_UNDERLINE)
        else:
            output.append(char)
    return "".join(output)


def _words(passage: str) -> list[str]:
    for a, b in _QUOTES:
        passage = passage.replace(a, b)
    words: list[str] = []
    prev_is_whitespace = True
    for c in _tokenize_chinese_chars(passage).strip():
        if c in " \t\r\n\u202f" + SPIECE_UNDERLINE:
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                words.append(c)
            else:
                words[-1] += c
            prev_is_whitespace = False
    return words


def read_chid_examples(input_data_file: str, input_label_file: str | None = None) -> list[ChidExample]:
    """A blank per example, in the file's order (CLUE's ``read_chid_examples``; its
    ``is_training`` is whether an answer file is given). A blank missing from the answer file, or
    a line that is not CHID's layout, is an error naming the file and line."""
    answers = None
    if input_label_file is not None:
        try:
            with open(input_label_file, encoding="utf-8-sig") as f:  # a byte order mark is skipped
                answers = json.load(f)
        except ValueError as e:
            raise BertDetrError(f"{input_label_file}: not JSON ({e})") from None
        if not isinstance(answers, dict):
            raise BertDetrError(f"{input_label_file}: CHID's answers are an object {{\"#idiom000000#\": index}}")
    examples = []
    for example_id, (n, line) in enumerate(read_json_lines(input_data_file)):
        where = f"{input_data_file}:{n}"
        options, content = line.get("candidates"), line.get("content")
        if not (isinstance(options, list) and options and all(isinstance(o, str) for o in options)
                and isinstance(content, list) and all(isinstance(c, str) for c in content)):
            raise BertDetrError(f"{where}: a CHID line is {{\"candidates\": [idiom, ...], \"content\": [passage, ...]}}")
        for passage in content:
            doc_tokens = _words(passage)
            for tag in (w for w in doc_tokens if "#idiom" in w):
                answer = None
                if answers is not None:
                    answer = answers.get(tag)
                    if not isinstance(answer, int) or not 0 <= answer < len(options):
                        raise BertDetrError(f"{where}: blank {tag}: {input_label_file} gives {answer!r}, not the index "
                                            f"of one of its {len(options)} candidates")
                examples.append(ChidExample(example_id, tag, doc_tokens, options, answer))
    return examples


def add_tokens_for_around(tokens: Sequence[str], pos: int, num_tokens: int) -> tuple[list[str], list[str]]:
    """CLUE's: ``num_tokens`` tokens around ``tokens[pos]`` (half on each side, the rest from the
    other side near an end of the passage). CLUE's quirk kept: in a passage shorter than the
    window whose blank is past its middle, the left start ``pos - left_len`` is negative and
    Python's slice counts it from the end, so fewer left tokens are taken than there are."""
    num_l = num_tokens // 2
    num_r = num_tokens - num_l
    if pos >= num_l and (len(tokens) - 1 - pos) >= num_r:
        return list(tokens[pos - num_l:pos]), list(tokens[pos + 1:pos + 1 + num_r])
    if pos <= num_l:
        tokens_l = list(tokens[:pos])
        return tokens_l, list(tokens[pos + 1:pos + 1 + num_tokens - len(tokens_l)])
    tokens_r = list(tokens[pos + 1:])
    return list(tokens[pos - (num_tokens - len(tokens_r)):pos]), tokens_r


def _masked(tokens: list[str], tag: str) -> list[str]:
    out = []
    for token in tokens:
        out.extend(["[MASK]"] * 4 if "#idiom" in token and token != tag else [token])
    return out


def convert_examples_to_features(examples: Sequence[ChidExample], tokenizer: FullTokenizer, max_seq_length: int = 64,
                                 max_num_choices: int = 10) -> dict[str, torch.Tensor]:
    """CLUE's features of every blank, stacked: ``input_ids``, ``input_mask``, ``segment_ids``
    [N,C,T] (ids int32, the rest int8: half a million blanks of 10 candidates at length 64 take
    2 GB, not 4) and ``label_ids`` [N] (0 without answers)."""
    for token in ("[CLS]", "[SEP]", "[MASK]", "[unused1]"):
        if token not in tokenizer.vocab:
            raise BertDetrError(f"the vocabulary has no {token} (CHID's features need it: Google's vocabularies have it)")
    num_tokens = max_seq_length - 3 - 5  # [CLS] [SEP] [unused1] [SEP] and the candidate's 4 characters
    if num_tokens < 0:
        raise BertDetrError(f"--max-seq-length {max_seq_length} leaves no room for the passage (at least 8)")
    N = len(examples)
    arrays = {k: np.zeros((N, max_num_choices, max_seq_length), np.int32 if k == "input_ids" else np.int8)
              for k in ("input_ids", "input_mask", "segment_ids")}
    labels = np.zeros(N, np.int32)
    pieces: dict[tuple[int, int], list[str]] = {}
    idioms: dict[str, list[str]] = {}
    for n, example in enumerate(examples):
        if len(example.options) > max_num_choices:
            raise BertDetrError(f"line {example.example_id + 1}: {len(example.options)} candidates; --num-choices is "
                                f"{max_num_choices}")
        key = (example.example_id, id(example.doc_tokens))  # the blanks of a passage share its word list
        if key not in pieces:  # the passage's word pieces, once for all its blanks
            pieces[key] = [p for w in example.doc_tokens for p in ([w] if "#idiom" in w else tokenizer.tokenize(w))]
        all_doc_tokens = pieces[key]
        tmp_l, tmp_r = add_tokens_for_around(all_doc_tokens, all_doc_tokens.index(example.tag), num_tokens)
        tokens_l = _masked(tmp_l, example.tag)
        # CLUE's cut back to the window's counts: ``[-num_l:]`` takes everything when num_l is 0
        tokens_l = tokens_l[-len(tmp_l):]
        tokens_r = _masked(tmp_r, example.tag)[:len(tmp_r)]
        for c, option in enumerate(example.options):
            if option not in idioms:  # some thousands of idioms, each candidate of many blanks
                idioms[option] = tokenizer.tokenize(option)
            tokens = ["[CLS]", *idioms[option], "[SEP]", *tokens_l, "[unused1]", *tokens_r, "[SEP]"]
            if len(tokens) > max_seq_length:
                raise BertDetrError(f"line {example.example_id + 1}, blank {example.tag}: candidate {option!r} makes "
                                    f"{len(tokens)} tokens, over --max-seq-length {max_seq_length} (CLUE's counts 4 "
                                    "per idiom)")
            arrays["input_ids"][n, c, :len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            arrays["input_mask"][n, c, :len(tokens)] = 1
        labels[n] = example.answer_index or 0
    out = {k: torch.from_numpy(v) for k, v in arrays.items()}
    out["label_ids"] = torch.from_numpy(labels)
    return out


def logits_matrix_to_array(logits_matrix, index_2_idiom: dict[int, str]) -> list[list]:
    """CLUE's decoding of one line's blanks: ``logits_matrix`` [blanks, candidates]; the (candidate,
    blank) pairs by decreasing score, each taken when neither is taken yet. Returns [[blank tag,
    candidate index]] by blank."""
    logits = np.asarray(logits_matrix).T
    pairs = [(i, j, v) for i, row in enumerate(logits) for j, v in enumerate(row)]
    choices, blanks = set(range(logits.shape[0])), set(range(logits.shape[1]))
    results = []
    for i, j, _ in sorted(pairs, key=lambda x: x[2], reverse=True):
        if j in blanks and i in choices:
            results.append((i, j))
            blanks.remove(j)
            choices.remove(i)
    return [[index_2_idiom[j], i] for i, j in sorted(results, key=lambda x: x[1])]


def get_final_predictions(examples: Sequence[ChidExample], logits: np.ndarray) -> dict[str, int]:
    """Each blank's candidate: ``logits_matrix_to_array`` over each line's blanks (``logits``
    [N, C], rows of the examples; padded candidates are never chosen)."""
    by_line: dict[int, list[int]] = {}
    for n, example in enumerate(examples):
        by_line.setdefault(example.example_id, []).append(n)
    answers = {}
    for rows in by_line.values():
        k = len(examples[rows[0]].options)
        for tag, choice in logits_matrix_to_array(logits[rows, :k], {i: examples[n].tag for i, n in enumerate(rows)}):
            answers[tag] = int(choice)
    return answers


def evaluate(answers: dict[str, int], predictions: dict[str, int]) -> float:
    """CLUE's accuracy (a fraction here, CLUE prints percent) over the blanks of the answer file;
    one without a prediction is an error."""
    missing = [tag for tag in answers if tag not in predictions]
    if missing:
        raise BertDetrError(f"no prediction for {len(missing)} blanks of the answers ({missing[0]}, ...)")
    return sum(predictions[tag] == answer for tag, answer in answers.items()) / len(answers) if answers else 0.0
