"""The question-answering pipeline against transformers 4's (transformers 5 removed it): goldens
made by ``tests/data/bert/pipelines/make_qa_goldens.py`` with transformers 4.57.6 on a tiny model
reading 64 positions (long English and Chinese contexts in several windows, every option)."""

import json
import os

import pytest

from bertdetr.bert import pipeline
from bertdetr.errors import BertDetrError
from tests.bert.pipelines.conftest import DATA, close

GOLDEN = json.load(open(os.path.join(DATA, "pipelines", "qa_golden.json"), encoding="utf-8"))


@pytest.fixture(scope="module")
def qa():
    return pipeline("question-answering", os.path.join(DATA, "pipelines", "qa_model"), device="cpu")


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["case"] for c in GOLDEN["cases"]])
def test_as_transformers_4(qa, case):
    got = qa(**case["kwargs"])
    close(got, case["answer"])
    for answer in got if isinstance(got, list) and isinstance(got[0], dict) else [got]:
        if isinstance(answer, dict) and answer["answer"]:
            context = case["kwargs"]["context"]
            context = context if isinstance(context, str) else None
            assert context is None or context[answer["start"]:answer["end"]] == answer["answer"]


def test_input_forms(qa):
    """transformers' forms: keywords, a dict, a list of dicts, two positional strings; one example
    gives a dict, several a list; options given at construction are defaults."""
    question, context = "Who is unaffable?", "John Smith lives in Paris, near the unaffable river Seine."
    one = qa(question=question, context=context)
    assert qa({"question": question, "context": context}) == one
    assert qa([{"question": question, "context": context}]) == one
    assert qa(question, context) == one
    assert qa([{"question": question, "context": context}] * 2) == [one, one]
    three = pipeline("question-answering", os.path.join(DATA, "pipelines", "qa_model"), device="cpu", top_k=3)
    assert three(question=question, context=context) == qa(question=question, context=context, top_k=3)
    assert len(three(question=question, context=context)) == 3


def test_bad_input(qa):
    context = "John Smith lives in Paris."
    for kwargs, match in (({"question": "Who?"}, "needs question= and context="),
                          ({"question": "", "context": context}, "non-empty question"),
                          ({"question": "Who?", "context": ""}, "non-empty context"),
                          ({"question": ["a", "b"], "context": [context]}, "2 questions and 1 contexts"),
                          ({"question": 3, "context": context}, "must be strings or lists"),
                          ({"question": "Who?", "context": context, "top_k": 0}, "top_k must be an integer >= 1"),
                          ({"question": "Who?", "context": context, "max_seq_len": 65}, "max_seq_len must be .* \\[4, 64\\]"),
                          ({"question": "Who?", "context": context, "doc_stride": -1}, "doc_stride must be"),
                          ({"question": "Who?", "context": context, "topk": 2}, "not topk")):
        with pytest.raises(BertDetrError, match=match):
            qa(**kwargs)
    # a question that leaves no room for the context in a window: said, not a tokenizer panic
    with pytest.raises(BertDetrError, match="the question takes 60 of the 64 tokens"):
        qa(question=" ".join(["john"] * 60), context=context)
    with pytest.raises(BertDetrError, match="need more than doc_stride \\(30\\)"):
        qa(question="Who?", context=context, max_seq_len=24, doc_stride=30)
