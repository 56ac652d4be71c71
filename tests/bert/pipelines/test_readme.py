"""The README's pipeline examples run as written, on stand-in folders for the ones they name
(a model of each kind), each line's result of the shape its comment says."""

import os
import re
from pathlib import Path

from tests.bert.pipelines.conftest import DATA

README = Path(__file__).resolve().parents[3] / "README.md"


def _block() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("BERT as transformers' `pipeline`")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_readme_pipeline_examples_run(folders):
    code = _block()
    stand_ins = {"run/model": folders["fill-mask"], "mrpc_out/model": folders["text-classification"],
                 "ner_out/model": folders["token-classification"],
                 "squad/model": os.path.join(DATA, "pipelines", "qa_model"),
                 # CLUENER's own BERT+CRF checkpoint (tests/data/bert/zh/cluener): a CRF model's folder
                 "cluener_crf/model": os.path.join(DATA, "zh", "cluener", "clueners_crf_model")}
    for name, folder in stand_ins.items():
        assert f'"{name}"' in code, f"the README's example no longer names {name}"
        code = code.replace(f'"{name}"', repr(folder))
    code = code.replace('pipeline("fill-mask", model=', 'pipeline("fill-mask", device="cpu", model=')
    lines = [line.split("#")[0].rstrip() for line in code.splitlines()]
    namespace = {"long_text": "张伟住在北京。" * 80, "long_context": "John Smith lives in Paris. " * 40}
    results = []
    for line in lines:
        if not line:
            continue
        if "=" in line.split("(")[0] or line.startswith(("from ", "import ")):
            exec(line, namespace)
        else:
            results.append((line, eval(line, namespace)))
    shapes = dict(results)
    assert len(shapes['fill("The capital of France is [MASK].")']) == 5
    assert {r["token_str"] for r in shapes['fill("The capital of France is [MASK].", targets=["paris", "lyon"], top_k=2)']} \
        == {"paris", "lyon"}
    assert set(shapes['classify("a review")'][0]) == {"label", "score"}
    assert len(shapes['classify({"text": "one", "text_pair": "two"}, top_k=None)']) == 2
    assert all("entity_group" in g for g in shapes['ner("张伟住在北京", aggregation_strategy="simple")'])
    assert all("entity_group" in g for g in shapes['ner(long_text, aggregation_strategy="first", stride=64)'])
    crf = shapes['crf("张伟住在北京", aggregation_strategy="simple")']
    assert namespace["crf"].crf and all(set(g) == {"entity_group", "score", "word", "start", "end"} for g in crf)
    assert set(shapes['qa(question="Who?", context="...")']) == {"score", "start", "end", "answer"}
    assert len(shapes['qa(question="Who?", context=long_context, top_k=3, handle_impossible_answer=True)']) == 3
