"""Makes ``cmrc_golden.json``: the official CMRC 2018 evaluation's scores on the cases below.

The official script is Python 2 (ymcui/cmrc2018, ``squad-style-data/cmrc2018_evaluate.py``, v5 -
special). Download it, then::

    python make_cmrc_goldens.py path/to/cmrc2018_evaluate.py

It is ported to Python 3 here, as text, before it runs: ``reload(sys)`` and ``setdefaultencoding``
dropped, ``str(x).decode('utf-8')`` -> ``str(x)``, ``ur'...'`` -> ``r'...'``. Its ``nltk.word_tokenize``
runs with ``preserve_line=True`` (no Punkt sentence split: the Punkt data is a download), as
``bertdetr.bert.finetuning.cmrc_metrics`` does. Nothing of the script is kept here; its outputs are.
"""

import json
import os
import sys
import types

CASES = [
    (["北京大学"], "北京大学"),
    (["北京大学"], "北京大学。"),
    (["北京大学"], "北京 大学"),
    (["北京大学"], "在北京大学"),
    (["北京大学", "北大"], "北大"),
    (["张伟和刘芳"], "张伟"),
    (["1998年"], "1998年"),
    (["1998年"], "1998"),
    (["iPhone手机"], "iphone 手机"),
    (["iPhone X手机"], "iPhone手机"),
    (["《红楼梦》"], "红楼梦"),
    (["“你好”，他说"], "你好他说"),
    (["约3.5公里"], "3.5公里"),
    (["Hello, world"], "hello world"),
    (["the U.S. army"], "U.S. army"),
    (["a-b-c"], "abc"),
    (["……等"], "…等"),
    (["中国"], ""),
    (["中国"], "，。"),
    (["ABC公司在2019年成立"], "2019年成立的ABC公司"),
    (["第一 第二 第三"], "第二 第三 第四"),
    (["東京"], "东京"),
    (["don't stop"], "do n't"),
    (["$100"], "100"),
]


def main(script_path: str) -> None:
    source = open(script_path, encoding="utf-8").read()
    source = source.replace("reload(sys)\n", "").replace("sys.setdefaultencoding('utf8')\n", "")
    source = source.replace(".decode('utf-8')", "").replace("ur'", "r'")
    import nltk

    nltk.word_tokenize = lambda text: nltk.tokenize.word_tokenize(text, preserve_line=True)
    official = types.ModuleType("cmrc2018_evaluate")
    exec(compile(source.split("if __name__ == '__main__':")[0], script_path, "exec"), official.__dict__)

    cases = [{"answers": a, "prediction": p, "f1": official.calc_f1_score(a, p), "em": official.calc_em_score(a, p),
              "segments": official.mixed_segmentation(p, rm_punc=True)} for a, p in CASES]
    dataset = [{"paragraphs": [{"qas": [{"id": f"q{i} ", "question": "?", "answers": [{"text": t} for t in a]}
                                        for i, (a, _) in enumerate(CASES)]}]}]
    predictions = {f"q{i}": p for i, (_, p) in enumerate(CASES) if i % 5}
    f1, em, total, skip = official.evaluate({"data": dataset}, predictions)
    out = {"cases": cases, "dataset": dataset, "predictions": predictions,
           "evaluate": {"F1": f1, "EM": em, "TOTAL": total, "SKIP": skip}}
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "cmrc_golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
