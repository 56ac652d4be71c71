"""CLUENER2020's official score on a prediction of dev.json, by CLUENER's own ``score.py`` (run
once; never needed by the tests):

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    python tests/data/bert/zh/cluener/make_score_golden.py /tmp/CLUENER2020

Writes ``pred_dev.json`` (dev.json's entities, some dropped, some given another type, some texts
added that are not entities: the first seeded draw
where every type has a hit, as score.py divides by zero otherwise) and ``score_golden.json``: score.py's
``get_f1_score_label`` for each type of dev.json and their mean (its ``get_f1_score`` with the types
of this data instead of CLUENER's ten, which it fixes, and the lines passed in instead of read from
its fixed paths).
"""

import importlib.util
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _predict(gold, rng, types):
    pred = []
    for line in gold:
        label = {}
        for type_, entities in line.get("label", {}).items():
            for text, spans in entities.items():
                r = rng.random()
                if r < 0.2:
                    continue
                new_type = rng.choice(types) if r < 0.3 else type_
                label.setdefault(new_type, {})[text] = spans
        if rng.random() < 0.3:
            i = rng.randrange(max(1, len(line["text"]) - 1))
            label.setdefault(rng.choice(types), {})[line["text"][i:i + 2]] = [[i, i + 1]]
        pred.append({"label": label})
    return pred


def main(cluener):
    spec = importlib.util.spec_from_file_location("score", os.path.join(cluener, "score.py"))
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    with open(os.path.join(HERE, "dev.json"), encoding="utf-8") as f:
        gold = [json.loads(line) for line in f if line.strip()]
    types = sorted({t for line in gold for t in line.get("label", {})})
    scored = [{"label": line.get("label", {}), **line} for line in gold]  # score.py reads line["label"]
    for seed in range(100):  # the first draw where score.py divides by no zero (each type has a hit)
        pred = _predict(gold, random.Random(seed), types)
        try:
            per_type = {t: score.get_f1_score_label(pred, scored, label=t) for t in types}
            break
        except ZeroDivisionError:
            continue
    with open(os.path.join(HERE, "pred_dev.json"), "w", encoding="utf-8") as f:
        for i, line in enumerate(pred):
            f.write(json.dumps({"id": i, **line}, ensure_ascii=False) + "\n")
    with open(os.path.join(HERE, "score_golden.json"), "w", encoding="utf-8") as f:
        json.dump({"seed": seed, "types": types, "f1": per_type, "macro_f1": sum(per_type.values()) / len(types)}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
