"""``batch_size``: inputs read by the model several at a time, padded, those of like length
together; the results equal one at a time (up to float rounding), in the inputs' order."""

import os

import pytest
import torch

from bertdetr.bert import pipeline
from bertdetr.errors import BertDetrError
from tests.bert.pipelines.conftest import DATA, close

TEXTS = ["Paris is the [MASK] of France.", "a [MASK] b [MASK] c", "北京是中国的[MASK]都。",
         "John Smith's unaffable [MASK], don't worry! " * 3, "[MASK]"]


def _calls(p):
    """Count the model's forward calls and the batch shapes it saw."""
    seen = []
    hook = p.model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["input_ids"].shape),
                                             with_kwargs=True)
    return seen, hook


@pytest.mark.parametrize("task, texts, kwargs", [
    ("fill-mask", TEXTS, {"top_k": 3}),
    ("text-classification", [t.replace("[MASK]", "x") for t in TEXTS] + [{"text": "a", "text_pair": "b c"}], {}),
    ("token-classification", [t.replace("[MASK]", "x") for t in TEXTS] * 3, {"aggregation_strategy": "simple",
                                                                              "stride": 4}),
])
def test_batches_equal_one_at_a_time(folders, task, texts, kwargs):
    folder = folders["ner" if task == "token-classification" else task]
    one = pipeline(task, folder, device="cpu")
    expected = one(texts, **kwargs)
    batched = pipeline(task, folder, device="cpu", batch_size=4)
    seen, hook = _calls(batched)
    got = batched(texts, **kwargs)
    hook.remove()
    close(got, expected)
    assert max(shape[0] for shape in seen) == 4 and len(seen) < len(texts)
    close(one(texts, batch_size=16, **kwargs), expected)


def test_feature_extraction_batches(folders):
    p = pipeline("feature-extraction", folders["feature-extraction"], device="cpu")
    texts = [t.replace("[MASK]", "y") for t in TEXTS]
    for a, b in zip(p(texts, batch_size=3, return_tensors=True), p(texts, return_tensors=True)):
        assert a.shape == b.shape  # each text's own tokens, no padding
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_question_answering_batches_windows_of_all_examples():
    qa = pipeline("question-answering", os.path.join(DATA, "pipelines", "qa_model"), device="cpu")
    golden = __import__("json").load(open(os.path.join(DATA, "pipelines", "qa_golden.json"), encoding="utf-8"))
    for case in golden["cases"]:
        close(qa(batch_size=5, **case["kwargs"]), case["answer"])


def test_bad_batch_size(folders):
    with pytest.raises(BertDetrError, match="batch_size must be an integer >= 1, got 0"):
        pipeline("fill-mask", folders["fill-mask"], device="cpu", batch_size=0)
    p = pipeline("text-classification", folders["text-classification"], device="cpu")
    for bad in (0, 2.5, True, "8"):
        with pytest.raises(BertDetrError, match="batch_size must be an integer >= 1"):
            p("text", batch_size=bad)
