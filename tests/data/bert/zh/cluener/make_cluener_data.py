"""Writes the CLUENER-layout NER data here (train.json, dev.json, test.json) from the first
sentences of ``../ner/*.txt`` (this project's generated CoNLL data), their types renamed as
CLUENER's (PER: name, LOC: address, ORG: organization), and a few lines written by hand for what
the generated ones lack: a one-character entity, Latin letters, a space, an entity twice in a line,
a line without entities and without a ``label``. Deterministic: ``python make_cluener_data.py``.

Layout (CLUENER2020's): a JSON object a line, ``{"text": ..., "label": {type: {entity text:
[[first, last], ...]}}}`` with character offsets, the last included; test lines have an ``id`` and
no ``label``.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = {"PER": "name", "LOC": "address", "ORG": "organization"}
COUNTS = {"train": 400, "dev": 80, "test": 20}
EXTRA = {
    "train": [
        ("在京东买了一台iPhone 手机", {"company": {"京东": [[1, 2]]}, "product": {"iPhone": [[7, 12]]}}),
        ("李总说，张伟和张伟的朋友都来了", {"name": {"李": [[0, 0]], "张伟": [[4, 5], [7, 8]]}}),
        ("今天下午一直在下雨", None),
    ],
    "dev": [
        ("王经理在淘宝开了一家店", {"name": {"王": [[0, 0]]}, "company": {"淘宝": [[4, 5]]}}),
        ("刘芳和刘芳的同学去了北京", {"name": {"刘芳": [[0, 1], [3, 4]]}, "address": {"北京": [[10, 11]]}}),
    ],
    "test": [("我用iPad 看了一部电影", None)],
}


def _conll(path):
    sentences, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                current.append(line.split())
            elif current:
                sentences.append(current)
                current = []
    return sentences


def _label(tokens):
    label = {}
    start = None
    for i, (_, tag) in enumerate([*tokens, ("", "O")]):
        if start is not None and not tag.startswith("I-"):
            type_ = TYPES[tokens[start][1][2:]]
            text = "".join(c for c, _ in tokens[start:i])
            label.setdefault(type_, {}).setdefault(text, []).append([start, i - 1])
            start = None
        if tag.startswith("B-"):
            start = i
    return label


def main():
    for split, count in COUNTS.items():
        lines = []
        for tokens in _conll(os.path.join(HERE, "..", "ner", f"{split}.txt"))[:count]:
            lines.append(("".join(c for c, _ in tokens), _label(tokens)))
        lines += EXTRA[split]
        with open(os.path.join(HERE, f"{split}.json"), "w", encoding="utf-8") as f:
            for i, (text, label) in enumerate(lines):
                obj = {"id": i, "text": text} if split == "test" else {"text": text}
                if label is not None and split != "test":
                    obj["label"] = label
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
