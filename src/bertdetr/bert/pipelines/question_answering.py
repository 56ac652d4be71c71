"""transformers 4's question-answering pipeline (transformers 5 removed it), its functions under
their names (``decode_spans``, ``select_starts_ends``, ``get_indices``)."""

from __future__ import annotations

import numpy as np

from bertdetr.bert.pipelines.base import Pipeline, check_batch_size
from bertdetr.errors import BertDetrError


def decode_spans(start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int,
                 undesired_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """transformers 4's ``decode_spans``: the ``topk`` spans start <= end < start + max_answer_len by
    the product of their probabilities [1, S] each, kept where both ends may answer
    (``undesired_tokens``, despite its name, is 1 where a token may); numpy's operations in its
    order, so that ties break as there."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    allowed = undesired_tokens.nonzero()
    keep = np.isin(starts, allowed) & np.isin(ends, allowed)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, candidates[0, starts, ends]


def select_starts_ends(start: np.ndarray, end: np.ndarray, p_mask: np.ndarray, min_null_score: float, top_k: int,
                       handle_impossible_answer: bool, max_answer_len: int):
    """transformers 4's ``select_starts_ends`` on one window's logits [1, S]: softmax over the
    tokens that may answer (``p_mask`` 0: the context and [CLS]), the no-answer score ([CLS]'s
    start x end) folded into ``min_null_score``, [CLS] then dropped, and ``decode_spans``."""
    undesired_tokens = np.abs(p_mask - 1)
    masked = undesired_tokens == 0
    start = np.where(masked, -10000.0, start)
    end = np.where(masked, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    return (*decode_spans(start, end, top_k, max_answer_len, undesired_tokens), min_null_score)


class QuestionAnsweringPipeline(Pipeline):
    """transformers 4's ``QuestionAnsweringPipeline`` (transformers 5 removed the task), its
    defaults and quirks: [CLS] question [SEP] context [SEP] in windows of ``max_seq_len`` tokens
    (default min(model positions, 384)) overlapping by ``doc_stride`` (default min(max_seq_len // 2,
    128)); in each, start and end probabilities (softmax over the context and [CLS]), its
    ``top_k * 2 + 10`` best spans of at most ``max_answer_len`` tokens widened to whole words
    (``align_to_words``; each CJK character is a word), the scores of spans giving the same text
    (case aside) added up; the ``top_k`` best, a dict when there is one. ``handle_impossible_answer``
    adds the no-answer ``{"answer": ""}`` scored by the windows' least [CLS] score.
    ``max_question_len`` is accepted and, as with transformers' fast tokenizers, unused."""

    task = "question-answering"

    OPTIONS = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None, "max_question_len": 64,
               "handle_impossible_answer": False, "align_to_words": True}

    def __init__(self, model_dir, device, **options):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertForQuestionAnswering

        self.model = BertForQuestionAnswering.from_pretrained(model_dir).to(device).eval()
        self._check_vocab(self.model.config)
        self.defaults = self._options(options, dict(self.OPTIONS))

    def _options(self, given: dict, base: dict) -> dict:
        unknown = set(given) - set(self.OPTIONS)
        if unknown:
            raise BertDetrError(f"question-answering takes {', '.join(self.OPTIONS)}, batch_size, not "
                                f"{', '.join(sorted(unknown))}")
        o = {**base, **given}
        positions = self.model.config.max_position_embeddings
        for key in ("top_k", "max_answer_len"):
            if not isinstance(o[key], int) or o[key] < 1:
                raise BertDetrError(f"{key} must be an integer >= 1, got {o[key]!r}")
        if o["max_seq_len"] is not None and not (isinstance(o["max_seq_len"], int) and 4 <= o["max_seq_len"] <= positions):
            raise BertDetrError(f"max_seq_len must be an integer in [4, {positions}] (the model's positions), "
                                f"got {o['max_seq_len']!r}")
        if o["doc_stride"] is not None and not (isinstance(o["doc_stride"], int) and o["doc_stride"] >= 0):
            raise BertDetrError(f"doc_stride must be an integer >= 0, got {o['doc_stride']!r}")
        return o

    def __call__(self, *args, question=None, context=None, batch_size: int | None = None, **kwargs):
        o = self._options(kwargs, self.defaults)
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        if len(args) == 2 and all(isinstance(x, str) for x in args):
            examples = [{"question": args[0], "context": args[1]}]
        elif len(args) == 1 and isinstance(args[0], (dict, list, tuple)):
            examples = [args[0]] if isinstance(args[0], dict) else list(args[0])
        elif args or question is None or context is None:
            raise BertDetrError("question-answering needs question= and context= (strings or lists), "
                                "or {\"question\", \"context\"} dicts")
        elif isinstance(question, str) and isinstance(context, str):
            examples = [{"question": question, "context": context}]
        elif isinstance(question, (list, tuple)) and isinstance(context, str):
            examples = [{"question": q, "context": context} for q in question]
        elif isinstance(question, (list, tuple)) and isinstance(context, (list, tuple)):
            if len(question) != len(context):
                raise BertDetrError(f"{len(question)} questions and {len(context)} contexts: give one context "
                                    "or one for each question")
            examples = [{"question": q, "context": c} for q, c in zip(question, context)]
        else:
            raise BertDetrError("question-answering: question= and context= must be strings or lists of them")
        for x in examples:
            for key in ("question", "context"):
                if not isinstance(x, dict) or not isinstance(x.get(key), str) or not x[key]:
                    raise BertDetrError(f"question-answering: each example needs a non-empty {key}, got {x!r}")
        results = self.answer(examples, o, batch_size)
        return results[0] if len(results) == 1 else results

    def _windows(self, question: str, context: str, max_seq_len: int, doc_stride: int) -> list:
        """Each window's encoding: the question whole, the context cut with ``doc_stride`` tokens
        of overlap (transformers' ``truncation="only_second"``, ``return_overflowing_tokens``)."""
        question_len = len(self.fast.encode(question, add_special_tokens=False).ids)
        room = max_seq_len - question_len - 3
        if room < 1 or doc_stride >= room:
            raise BertDetrError(f"the question takes {question_len} of the {max_seq_len} tokens of a window "
                                f"(max_seq_len), leaving {room} for the context: need more than doc_stride "
                                f"({doc_stride}); shorten the question or give a larger max_seq_len or smaller doc_stride")
        enc = self.encode(question, context, max_seq_len, stride=doc_stride, strategy="only_second")
        return [enc, *enc.overflowing]

    def answer(self, examples: list[dict], o: dict, batch_size: int) -> list:
        """Each example's answer(s): its windows read ``batch_size`` at a time (of all examples),
        then, per example, transformers 4's ``postprocess`` over its windows in order."""
        max_seq_len = o["max_seq_len"] or min(self.model.config.max_position_embeddings, 384)
        doc_stride = min(max_seq_len // 2, 128) if o["doc_stride"] is None else o["doc_stride"]
        windows = [self._windows(x["question"], x["context"], max_seq_len, doc_stride) for x in examples]
        encodings = [enc for example_windows in windows for enc in example_windows]

        def forward(ids, mask, segments, members):
            out = self.model(input_ids=ids, input_mask=mask, segment_ids=segments)
            start, end = out["start_logits"].float().cpu().numpy(), out["end_logits"].float().cpu().numpy()
            n = [len(encodings[i].ids) for i in members]
            return [(start[row:row + 1, :n[row]], end[row:row + 1, :n[row]]) for row in range(len(members))]

        logits = iter(self.forward_batches(encodings, batch_size, forward))
        return [self.postprocess(x["context"], example_windows, [next(logits) for _ in example_windows], o)
                for x, example_windows in zip(examples, windows)]

    def postprocess(self, context: str, windows: list, logits: list, o: dict):
        """transformers 4's ``postprocess``: each window's best spans (``select_starts_ends``)
        widened to words, the same text's scores added, the no-answer if asked, the ``top_k`` best."""
        top_k, null_score, answers = o["top_k"], 1000000.0, []
        for enc, (start, end) in zip(windows, logits):
            p_mask = np.array([s != 1 for s in enc.sequence_ids], dtype=np.int64)
            p_mask[np.array(enc.ids) == self.tokenizer.vocab["[CLS]"]] = 0  # [CLS] kept: the no-answer
            starts, ends, scores, null_score = select_starts_ends(
                start, end, p_mask, null_score, top_k * 2 + 10 if o["align_to_words"] else top_k,
                o["handle_impossible_answer"], o["max_answer_len"])
            for s, e, score in zip(starts, ends, scores):
                begin, finish = self.get_indices(enc, int(s), int(e), o["align_to_words"])
                text = context[begin:finish]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": begin, "end": finish, "answer": text})
        if o["handle_impossible_answer"]:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        return answers[0] if len(answers) == 1 else answers

    @staticmethod
    def get_indices(enc, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """The context characters of tokens s..e, widened to whole words if asked."""
        if align_to_words:
            try:
                return (enc.word_to_chars(enc.token_to_word(s), sequence_index=1)[0],
                        enc.word_to_chars(enc.token_to_word(e), sequence_index=1)[1])
            except Exception:  # transformers' fallback: a token outside any word ([CLS])
                pass
        return enc.offsets[s][0], enc.offsets[e][1]
