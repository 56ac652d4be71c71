"""BERT from Python, as transformers' ``pipeline``:

    from bertdetr.bert import pipeline

    fill = pipeline("fill-mask", model="run/model")
    fill("The capital of France is [MASK].")   # [{"score", "token", "token_str", "sequence"}, ...] top 5
    pipeline("feature-extraction", model=DIR)("some text")            # [[per-token vectors]]
    pipeline("text-classification", model=DIR)("great film")          # [{"label", "score"}]
    pipeline("token-classification", model=DIR)("John lives in Paris")  # [{"entity", "score", "index", "word", "start", "end"}]
    pipeline("question-answering", model=DIR)(question=..., context=...)  # {"score", "start", "end", "answer"}

Each returns what transformers' pipeline of the same task returns on the same folder (same keys,
same values up to float rounding; tests compare them; question answering, which transformers 5
removed, as transformers 4 did it): the same tokens (Google's WordPiece, the
algorithm of transformers' BERT tokenizers), the same heads, and transformers' post-processing
(softmax scores, its decoding of the filled sequence, character offsets of tokens, the best answer
span of at most ``max_answer_len`` tokens). A folder as transformers 5 saves it (``tokenizer.json``,
no ``vocab.txt``) works too (``inference.load_tokenizer``).

Offsets come from the ``tokenizers`` library (the Rust WordPiece of the same vocabulary): the
pipelines that report character positions (token classification, question answering) use its
encoding, which gives Google's tokens.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.inference import MASK, encode, load_tokenizer
from bertdetr.errors import BertDetrError

__all__ = ["pipeline", "TASKS"]

TASKS = ("fill-mask", "feature-extraction", "text-classification", "token-classification", "question-answering")


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    return torch.device(device)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def decode(tokens: Sequence[str]) -> str:
    """transformers' ``BertTokenizer.decode``: the ``tokenizers`` WordPiece decoder with its
    clean-up (pieces glued, no space before . ? ! , and the English contractions)."""
    from tokenizers import decoders

    return decoders.WordPiece(prefix="##", cleanup=True).decode(list(tokens))


def _fast_tokenizer(tokenizer: FullTokenizer):
    """The ``tokenizers`` WordPiece of the same vocabulary and casing (for character offsets)."""
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(dict(tokenizer.vocab), lowercase=tokenizer.do_lower_case,
                                  strip_accents=None if tokenizer.do_lower_case else False)


class _Pipeline:
    def __init__(self, model_dir: str, device: torch.device):
        self.model_dir, self.device = model_dir, device
        self.tokenizer = load_tokenizer(model_dir)

    def _check_vocab(self, config) -> None:
        if config.vocab_size != len(self.tokenizer.vocab):
            raise BertDetrError(f"{self.model_dir}: the vocabulary has {len(self.tokenizer.vocab)} entries, "
                                f"the model {config.vocab_size}")

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)):
            return [self.one(x, **kwargs) for x in inputs]
        return self.one(inputs, **kwargs)


class FillMaskPipeline(_Pipeline):
    """transformers' ``FillMaskPipeline``: for each [MASK], the ``top_k`` tokens by probability."""

    def __init__(self, model_dir, device, top_k: int = 5):
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertForPreTraining

        self.model = BertForPreTraining.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.top_k = top_k
        self.inv = {i: t for t, i in self.tokenizer.vocab.items()}

    @torch.no_grad()
    def one(self, text: str, top_k: int | None = None):
        top_k = top_k or self.top_k
        if MASK not in text:
            raise BertDetrError(f"the text has no {MASK} to fill: {text!r}")
        ids = encode(self.tokenizer, text, self.model.config.max_position_embeddings)
        mask_id = self.tokenizer.vocab[MASK]
        positions = [i for i, t in enumerate(ids) if t == mask_id]
        x = torch.tensor([ids], device=self.device)
        logits = self.model(input_ids=x, masked_lm_positions=torch.tensor([positions], device=self.device))
        probs = logits["masked_lm_logits"][0].float().softmax(-1).cpu()
        vocab = self.tokenizer.vocab
        pad = vocab.get("[PAD]")
        # transformers decodes the sequence skipping its special tokens (one mask) or only padding
        special = {vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", MASK) if t in vocab} \
            if len(positions) == 1 else {pad}
        out = []
        for k, pos in enumerate(positions):
            values, indices = probs[k].topk(top_k)
            rows = []
            for score, token in zip(values.tolist(), indices.tolist()):
                filled = list(ids)
                filled[pos] = token
                words = [self.inv[t] for t in filled if t not in special]
                rows.append({"score": score, "token": token, "token_str": decode([self.inv[token]]),
                             "sequence": decode(words)})
            out.append(rows)
        return out[0] if len(out) == 1 else out

    def __call__(self, inputs, **kwargs):
        # transformers returns a one-text list's result unwrapped
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            return self.one(inputs[0], **kwargs)
        return super().__call__(inputs, **kwargs)


class FeatureExtractionPipeline(_Pipeline):
    """transformers' ``FeatureExtractionPipeline``: the last layer at every token, [CLS] and [SEP]
    included, as nested lists [1][T][D]."""

    def __init__(self, model_dir, device):
        super().__init__(model_dir, device)
        from bertdetr.bert.model import BertModel

        self.model = BertModel.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)

    @torch.no_grad()
    def one(self, text: str):
        ids = encode(self.tokenizer, text.replace(MASK, " "), self.model.config.max_position_embeddings)
        out = self.model(torch.tensor([ids], device=self.device))
        return out.sequence_output.float().cpu().tolist()


class TextClassificationPipeline(_Pipeline):
    """transformers' ``TextClassificationPipeline`` (``top_k`` 1): the best label and its softmax
    probability (a sigmoid for a one-label model); a pair as ``{"text", "text_pair"}``."""

    def __init__(self, model_dir, device):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForSequenceClassification

        self.model = BertForSequenceClassification.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)

    @torch.no_grad()
    def one(self, text):
        a, b = (text["text"], text.get("text_pair")) if isinstance(text, dict) else (text, None)
        tok = self.tokenizer
        pieces_a, pieces_b = tok.tokenize(a), tok.tokenize(b) if b else []
        limit = self.model.config.max_position_embeddings - (3 if b else 2)
        pieces_a = pieces_a[:limit - len(pieces_b)] if b else pieces_a[:limit]
        tokens = ["[CLS]", *pieces_a, "[SEP]"] + ([*pieces_b, "[SEP]"] if b else [])
        segments = [0] * (len(pieces_a) + 2) + [1] * (len(tokens) - len(pieces_a) - 2)
        ids = torch.tensor([tok.convert_tokens_to_ids(tokens)], device=self.device)
        logits = self.model(input_ids=ids, segment_ids=torch.tensor([segments], device=self.device))["logits"]
        scores = logits[0].float().cpu().numpy()
        scores = 1 / (1 + np.exp(-scores)) if len(scores) == 1 else _softmax(scores)
        best = int(scores.argmax())
        return {"label": self.model.labels[best], "score": float(scores[best])}

    def __call__(self, inputs, **kwargs):
        # transformers: a text -> [{"label", "score"}]; a list of texts -> one dict each
        if isinstance(inputs, (list, tuple)):
            return [self.one(x) for x in inputs]
        return [self.one(inputs)]


class TokenClassificationPipeline(_Pipeline):
    """transformers' ``TokenClassificationPipeline`` (no aggregation): each token whose best label
    is not ``O``, with its softmax score, position (``index``, [CLS] is 0), text and character
    offsets."""

    def __init__(self, model_dir, device, ignore_labels: Sequence[str] = ("O",)):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForTokenClassification

        self.model = BertForTokenClassification.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.fast = _fast_tokenizer(self.tokenizer)
        self.ignore = set(ignore_labels)

    @torch.no_grad()
    def one(self, text: str):
        enc = self.fast.encode(text)
        ids = enc.ids[:self.model.config.max_position_embeddings]
        logits = self.model(input_ids=torch.tensor([ids], device=self.device))["logits"][0].float().cpu().numpy()
        probs = _softmax(logits)
        out = []
        for i, (token, special, (start, end)) in enumerate(zip(enc.tokens, enc.special_tokens_mask, enc.offsets)):
            if special or i >= len(ids):
                continue
            best = int(probs[i].argmax())
            label = self.model.labels[best]
            if label in self.ignore:
                continue
            out.append({"entity": label, "score": float(probs[i, best]), "index": i, "word": token,
                        "start": start, "end": end})
        return out


class QuestionAnsweringPipeline(_Pipeline):
    """transformers 4's ``QuestionAnsweringPipeline`` (one answer, one window; transformers 5
    removed the task): [CLS] question [SEP] context [SEP]; start and end probabilities (softmax over
    the context tokens and [CLS], whose own score is then dropped), the best span start <= end <
    start + ``max_answer_len`` by their product, its characters in the context."""

    def __init__(self, model_dir, device, max_answer_len: int = 15):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForQuestionAnswering

        self.model = BertForQuestionAnswering.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.fast = _fast_tokenizer(self.tokenizer)
        self.max_answer_len = max_answer_len

    def __call__(self, question=None, context=None, **kwargs):
        if question is None or context is None:
            raise BertDetrError("question-answering needs question= and context=")
        if isinstance(question, (list, tuple)):
            return [self.one(q, c) for q, c in zip(question, context if isinstance(context, (list, tuple))
                                                    else [context] * len(question))]
        return self.one(question, context)

    @torch.no_grad()
    def one(self, question: str, context: str):
        enc = self.fast.encode(question, context)
        n = min(len(enc.ids), self.model.config.max_position_embeddings)
        ids = torch.tensor([enc.ids[:n]], device=self.device)
        segments = torch.tensor([enc.type_ids[:n]], device=self.device)
        out = self.model(input_ids=ids, segment_ids=segments)
        start, end = out["start_logits"][0].float().cpu().numpy(), out["end_logits"][0].float().cpu().numpy()
        # p_mask: only context tokens (and [CLS], whose score is then dropped) can be the answer
        context_token = np.array([t == 1 and not s for t, s in zip(enc.type_ids[:n], enc.special_tokens_mask[:n])])
        keep = context_token.copy()
        keep[0] = True
        start = np.where(keep, start, -10000.0)
        end = np.where(keep, end, -10000.0)
        p_start, p_end = _softmax(start), _softmax(end)
        p_start[0] = p_end[0] = 0.0  # transformers: no impossible answer unless asked
        scores = np.triu(np.outer(p_start, p_end)) * np.tril(np.ones((n, n)), self.max_answer_len - 1)
        s, e = np.unravel_index(int(scores.argmax()), scores.shape)
        begin, finish = enc.offsets[s][0], enc.offsets[e][1]
        return {"score": float(scores[s, e]), "start": int(begin), "end": int(finish), "answer": context[begin:finish]}


_PIPELINES = {"fill-mask": FillMaskPipeline, "feature-extraction": FeatureExtractionPipeline,
              "text-classification": TextClassificationPipeline, "token-classification": TokenClassificationPipeline,
              "ner": TokenClassificationPipeline, "question-answering": QuestionAnsweringPipeline}


def pipeline(task: str, model: str | os.PathLike, device=None, **kwargs):
    """The pipeline of ``task`` (one of ``TASKS``) on the model folder ``model`` (ours or
    transformers'), on ``device`` (default: the GPU when there is one; an int as transformers':
    -1 the CPU, k the k-th GPU). Call it with a text or a list of texts (question answering:
    ``question=``, ``context=``)."""
    if task not in _PIPELINES:
        raise BertDetrError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return _PIPELINES[task](os.fspath(model), _device(device), **kwargs)
