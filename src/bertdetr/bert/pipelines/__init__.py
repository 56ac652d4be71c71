"""BERT from Python, as transformers' ``pipeline``:

    from bertdetr.bert import pipeline

    fill = pipeline("fill-mask", model="run/model")
    fill("The capital of France is [MASK].")   # [{"score", "token", "token_str", "sequence"}, ...] top 5
    fill("The capital of France is [MASK].", targets=["paris", "lyon"])   # only these
    pipeline("feature-extraction", model=DIR)("some text")            # [[per-token vectors]]
    pipeline("text-classification", model=DIR)("great film")          # [{"label", "score"}]
    pipeline("text-classification", model=DIR)("great film", top_k=None)   # every label, best first
    ner = pipeline("token-classification", model=DIR)
    ner("John lives in Paris")     # [{"entity", "score", "index", "word", "start", "end"}] per token
    ner("张伟住在北京", aggregation_strategy="simple")   # [{"entity_group", "score", "word", "start", "end"}]
    ner(long_text, aggregation_strategy="first", stride=32)   # every window of a long text
    qa = pipeline("question-answering", model=DIR)
    qa(question=..., context=...)                 # {"score", "start", "end", "answer"}
    qa(question=..., context=..., top_k=3, handle_impossible_answer=True)   # a list, "" for no answer

Each returns what transformers' pipeline of the same task returns on the same folder, with its
options and defaults (same keys, same values up to float rounding; tests compare them; question
answering, which transformers 5 removed, as transformers 4 did it): the same tokens (Google's
WordPiece, the algorithm of transformers' BERT tokenizers), the same heads, and transformers'
post-processing (softmax scores, its decoding of the filled sequence, character offsets of tokens,
its entity grouping, its answer windows and spans). Options go to ``pipeline(...)`` (defaults) or
to the call. A folder as transformers 5 saves it (``tokenizer.json``, no ``vocab.txt``) works too
(``inference.load_tokenizer``).

Offsets come from the ``tokenizers`` library (the Rust WordPiece of the same vocabulary): the
pipelines that report character positions (token classification, question answering) use its
encoding, which gives Google's tokens. Each task's file is named as transformers' (``pipelines/
fill_mask.py``...), its functions too.
"""

from __future__ import annotations

import inspect
import os

from bertdetr.bert.pipelines.base import check_batch_size
from bertdetr.bert.pipelines.feature_extraction import FeatureExtractionPipeline
from bertdetr.bert.pipelines.fill_mask import FillMaskPipeline
from bertdetr.bert.pipelines.question_answering import QuestionAnsweringPipeline
from bertdetr.bert.pipelines.text_classification import TextClassificationPipeline
from bertdetr.bert.pipelines.token_classification import AGGREGATIONS, TokenClassificationPipeline
from bertdetr.devices import parse_device
from bertdetr.errors import BertDetrError
from bertdetr.training.precision import inference_dtype

__all__ = ["pipeline", "TASKS", "AGGREGATIONS"]

TASKS = ("fill-mask", "feature-extraction", "text-classification", "token-classification", "question-answering")


_PIPELINES = {"fill-mask": FillMaskPipeline, "feature-extraction": FeatureExtractionPipeline,
              "text-classification": TextClassificationPipeline, "token-classification": TokenClassificationPipeline,
              "ner": TokenClassificationPipeline, "question-answering": QuestionAnsweringPipeline}


def pipeline(task: str, model: str | os.PathLike, device=None, **kwargs):
    """The pipeline of ``task`` (one of ``TASKS``) on the model folder ``model`` (ours or
    transformers'), on ``device`` (default: the GPU when there is one; an int as transformers':
    -1 the CPU, k the k-th GPU). Call it with a text or a list of texts (question answering:
    ``question=``, ``context=``). ``batch_size`` (default 1, as transformers'; also a call's
    option): inputs the model reads at once, those of like length together; the same results up
    to float rounding. ``dtype`` (as transformers' ``dtype``/``torch_dtype``): the weights' type,
    torch.bfloat16 or float16 to halve the memory on a GPU; scores are computed in float32 from the
    model's outputs either way."""
    if task not in _PIPELINES:
        raise BertDetrError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    cls = _PIPELINES[task]
    params = inspect.signature(cls.__init__).parameters
    takes = list(getattr(cls, "OPTIONS", None) or [k for k in params if k not in ("self", "model_dir", "device")])
    unknown = sorted(set(kwargs) - set(takes) - {"batch_size", "dtype", "torch_dtype"})
    if unknown:
        raise BertDetrError(f"{task} takes {', '.join(takes + ['batch_size', 'dtype'])}, not {', '.join(unknown)}")
    batch_size = check_batch_size(kwargs.pop("batch_size", 1))
    dtype, torch_dtype = kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
    dtype = inference_dtype(dtype if dtype is not None else torch_dtype)  # None: float32
    made = cls(os.fspath(model), parse_device(device), **kwargs)
    made.batch_size = batch_size
    if dtype is not None:
        made.model.to(dtype)
    return made

