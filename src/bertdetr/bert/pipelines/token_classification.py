"""transformers' token-classification (NER) pipeline, its aggregation strategies and windows;
the methods keep its names (``gather_pre_entities``, ``aggregate_words``, ``group_entities``...)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bertdetr.bert.head_weights import CLUENER_SPECIAL_TAGS
from bertdetr.bert.pipelines.base import Pipeline, check_batch_size, decode, softmax
from bertdetr.errors import BertDetrError

AGGREGATIONS = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """transformers' ``TokenClassificationPipeline``. ``aggregation_strategy``:

    - "none" (default): each token whose best label is not ignored: ``{"entity", "score", "index"
      ([CLS] is 0), "word", "start", "end"}``;
    - "simple": adjacent tokens of one entity type grouped (B- starts a new one, I- or no prefix
      continues): ``{"entity_group", "score" (their mean), "word", "start", "end"}``;
    - "first", "average", "max": as "simple", after each word's pieces are made to agree on the
      label of its first piece, of their mean scores, or of its most confident piece.

    ``stride`` (with an aggregation): texts longer than the model's positions are read in windows
    overlapping by ``stride`` tokens, and entities in the overlap kept once (the longer, then the
    more confident), as transformers does; without it a long text is cut at the model's length.
    ``ignore_labels`` (default ``["O"]``, and for a CLUENER2020 checkpoint its tags that tag no
    entity, ``X``, ``[START]`` and ``[END]``, as its ``get_entity_bios`` skips them). ``is_split_into_words``: an input is a list of words (a
    CoNLL sentence, Chinese characters), read as the text of them joined by ``delimiter`` (default a
    space), whose characters ``start`` and ``end`` count. As transformers, a grouped ``word`` is the tokens joined
    by its decoder: Chinese characters come out spaced ("北 京"); ``text[start:end]`` is the span.
    The character offsets come from the ``tokenizers`` WordPiece of the same vocabulary.

    A model with a CRF (``bert ner --crf``, a ``BertCrfForNer``; transformers has none) is decoded
    by its CRF (Viterbi over [CLS], each word's first piece and [SEP], as it was trained), not by
    each token's best score: every piece of a word gets the word's tag, its ``score`` the
    probability of that tag in the token's softmax (a word's: its first piece's, their mean or their
    most for "first", "average", "max"; "simple" is "first")."""

    task = "token-classification"

    def __init__(self, model_dir, device, ignore_labels: Sequence[str] | None = None, aggregation_strategy: str = "none",
                 stride: int | None = None, is_split_into_words: bool = False, delimiter: str = " "):
        super().__init__(model_dir, device)
        from bertdetr.bert.heads import BertCrfForNer, BertForTokenClassification

        self.model = BertForTokenClassification.from_pretrained(model_dir).to(device).eval()
        self.crf = isinstance(self.model, BertCrfForNer)  # (bert ner --crf: tags from its CRF's best path)
        self._check_vocab(self.model.config)
        if ignore_labels is None:
            ignore_labels = ("O", *[t for t in CLUENER_SPECIAL_TAGS if t in self.model.labels])
        self.defaults = {"ignore_labels": ignore_labels, "aggregation_strategy": aggregation_strategy, "stride": stride,
                         "is_split_into_words": is_split_into_words, "delimiter": delimiter}
        self._options({})  # bad defaults fail here
        self.texts_cut = 0
        """Texts (or lists of words) read only up to the model's length, without ``stride``, by the
        calls so far: transformers' pipeline cuts them silently; a caller can tell its user."""

    def _options(self, kwargs) -> tuple[set, str, int | None, str | None]:
        """(ignored labels, aggregation, stride, the delimiter of words or None for texts)."""
        unknown = set(kwargs) - set(self.defaults)
        if unknown:
            raise BertDetrError(f"token-classification takes {', '.join(self.defaults)}, batch_size, not "
                                f"{', '.join(sorted(unknown))}")
        o = {**self.defaults, **kwargs}
        # a name, or transformers' AggregationStrategy member (a str enum: its value)
        aggregation = str(getattr(o["aggregation_strategy"], "value", o["aggregation_strategy"])).lower()
        stride = o["stride"]
        if aggregation not in AGGREGATIONS:
            raise BertDetrError(f"aggregation_strategy must be one of {', '.join(AGGREGATIONS)}, "
                                f"got {o['aggregation_strategy']!r}")
        if stride is not None:
            length = self.model.config.max_position_embeddings
            if not isinstance(stride, int) or not 0 <= stride < length - 2:
                raise BertDetrError(f"stride must be an integer in [0, {length - 2}) (the model reads {length} "
                                    f"positions, [CLS] and [SEP] included), got {stride!r}")
            if aggregation == "none":
                raise BertDetrError('stride reads the whole text in windows and needs an aggregation_strategy '
                                    'other than "none" (as transformers)')
        if not isinstance(o["delimiter"], str):
            raise BertDetrError(f"delimiter must be a string, got {o['delimiter']!r}")
        ignore = self.defaults["ignore_labels"] if o["ignore_labels"] is None else o["ignore_labels"]
        return ({ignore} if isinstance(ignore, str) else set(ignore), aggregation, stride,
                o["delimiter"] if o["is_split_into_words"] else None)

    def __call__(self, inputs, **kwargs):
        batch_size = check_batch_size(kwargs.pop("batch_size", self.batch_size))
        ignore, aggregation, stride, delimiter = self._options(kwargs)
        if delimiter is None:
            many = isinstance(inputs, (list, tuple))
            items = list(inputs) if many else [inputs]
        else:  # transformers: a list of lists is several sentences; one sentence still comes back in a list
            many = True
            items = list(inputs) if isinstance(inputs, (list, tuple)) and all(isinstance(x, list) for x in inputs) \
                else [inputs]
        windows = [self._windows(item, stride, delimiter is not None) for item in items]
        encodings = [enc for text_windows in windows for enc in text_windows]

        def forward(ids, mask, segments, members):
            logits = self.model(input_ids=ids, input_mask=mask, segment_ids=segments)["logits"].float()
            words = [None] * len(members)
            if self.crf:
                tag_mask = torch.zeros_like(ids)
                for row, i in enumerate(members):
                    tag_mask[row, self.tagged_positions(encodings[i])] = 1
                paths = self.model.decode(logits, tag_mask).cpu().numpy()
                words = [self.chain_tags(encodings[i], paths[row]) for row, i in enumerate(members)]
            logits = logits.cpu().numpy()
            return [(softmax(logits[row, :len(encodings[i].ids)]), words[row]) for row, i in enumerate(members)]

        scores = iter(self.forward_batches(encodings, batch_size, forward))
        results = []
        for item, text_windows in zip(items, windows):
            text, starts = (item, None) if delimiter is None else self.join_words(list(item), delimiter)
            entities = []
            for enc in text_windows:
                pre = self.gather_pre_entities(text, enc, *next(scores), starts)
                entities += [e for e in self.aggregate(pre, aggregation)
                             if e.get("entity") not in ignore and e.get("entity_group") not in ignore]
            results.append(self.aggregate_overlapping_entities(entities) if len(text_windows) > 1 else entities)
        return results if many else results[0]

    def _windows(self, item: str | list[str], stride: int | None, words: bool) -> list:
        """The encodings the model reads: the text (or list of words) cut at the model's length
        ([SEP] kept), or with ``stride`` every window of it (``return_overflowing_tokens``)."""
        if not isinstance(item, list if words else str):
            raise BertDetrError(f"token-classification reads {'lists of words' if words else 'texts'}, "
                                f"got {type(item).__name__}")
        enc = self.encode(list(item) if words else item, stride=stride or 0, words=words)
        if stride is None:
            self.texts_cut += bool(enc.overflowing)
            return [enc]
        return [enc, *enc.overflowing]

    @staticmethod
    def join_words(words: list[str], delimiter: str) -> tuple[str, list[int]]:
        """transformers' sentence of pre-split words: them joined by ``delimiter``, and where each
        starts in it (its ``word_to_chars_map``)."""
        starts, at = [], 0
        for word in words:
            starts.append(at)
            at += len(word) + len(delimiter)
        return delimiter.join(words), starts

    def gather_pre_entities(self, text: str, enc, scores: np.ndarray, tags: np.ndarray | None = None,
                            word_starts: list[int] | None = None) -> list[dict]:
        """Each non-special token of the encoding ``enc``: its piece, scores [C], offsets in
        ``text`` (of pre-split words: within its word, moved by ``word_starts``), whether it
        continues a word (a piece whose text is shorter than it: "##ing"; [UNK] never) and, from a
        CRF model, its word's tag id (``tags``, per token: ``chain_tags``)."""
        pre = []
        for i in range(len(enc.ids)):
            if enc.special_tokens_mask[i]:
                continue
            word, (start, end) = enc.tokens[i], enc.offsets[i]
            if word_starts is not None:
                start, end = start + word_starts[enc.word_ids[i]], end + word_starts[enc.word_ids[i]]
            subword = len(word) != len(text[start:end])
            if word == "[UNK]":
                word, subword = text[start:end], False
            pre.append({"word": word, "scores": scores[i], "start": start, "end": end, "index": i,
                        "is_subword": subword, **({} if tags is None else {"tag": int(tags[i])})})
        return pre

    @staticmethod
    def tagged_positions(enc) -> list[int]:
        """The positions a CRF model's chain tags, as ``bert ner`` trained it: [CLS], each word's
        first piece, [SEP]."""
        return [i for i, w in enumerate(enc.word_ids) if w is None or i == 0 or w != enc.word_ids[i - 1]]

    def chain_tags(self, enc, path: np.ndarray | None) -> np.ndarray | None:
        """Per token, the tag id the CRF's best ``path`` (over ``tagged_positions``) gives its word;
        None without a path."""
        if path is None:
            return None
        tags, k = np.zeros(len(enc.ids), np.int64), -1
        tagged = set(self.tagged_positions(enc))
        for i in range(len(enc.ids)):
            k += i in tagged
            tags[i] = path[k]
        return tags

    def aggregate(self, pre: list[dict], aggregation: str) -> list[dict]:
        """The tokens' entities (none), grouped (simple), or words' grouped (first, average, max).
        A CRF model's tags are its chain's, a word's for each of its pieces: "simple" groups its
        words as "first" does (its pieces share one tag, a B- tag would open a group at each)."""
        labels = self.model.labels
        if self.crf and aggregation == "simple":
            aggregation = "first"
        if aggregation in ("none", "simple"):
            entities = []
            for p in pre:
                best = p.get("tag", int(p["scores"].argmax()))
                entities.append({"entity": labels[best], "score": float(p["scores"][best]), "index": p["index"],
                                 "word": p["word"], "start": p["start"], "end": p["end"]})
        else:
            entities = self.aggregate_words(pre, aggregation)
        return entities if aggregation == "none" else self.group_entities(entities)

    def aggregate_word(self, pieces: list[dict], aggregation: str) -> dict:
        """One word's pieces as one entity, labelled by ``aggregation`` (a CRF model's: by its
        chain, scored by ``aggregation`` over the pieces' probabilities of that tag)."""
        if "tag" in pieces[0]:
            best = pieces[0]["tag"]
            probs = [float(p["scores"][best]) for p in pieces]
            score = {"first": probs[0], "max": max(probs)}.get(aggregation, float(np.mean(probs)))
            return {"entity": self.model.labels[best], "score": score, "word": decode([p["word"] for p in pieces]),
                    "start": pieces[0]["start"], "end": pieces[-1]["end"]}
        if aggregation == "first":
            scores = pieces[0]["scores"]
        elif aggregation == "max":
            scores = max(pieces, key=lambda p: p["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([p["scores"] for p in pieces]), axis=0)
        best = int(scores.argmax())
        return {"entity": self.model.labels[best], "score": float(scores[best]),
                "word": decode([p["word"] for p in pieces]), "start": pieces[0]["start"], "end": pieces[-1]["end"]}

    def aggregate_words(self, pre: list[dict], aggregation: str) -> list[dict]:
        words, group = [], []
        for p in pre:
            if group and not p["is_subword"]:
                words.append(self.aggregate_word(group, aggregation))
                group = []
            group.append(p)
        if group:
            words.append(self.aggregate_word(group, aggregation))
        return words

    @staticmethod
    def get_tag(label: str) -> tuple[str, str]:
        """(prefix, type): "B" or "I" as transformers', and "S" and "E" of BIOES (and CLUENER's BIOS)
        tags; BMES's "M" (a middle token) and a label without a prefix continue ("I"). transformers reads ``S-name`` and ``E-PER``
        as types of their own (so a BIOES model's ``B-PER E-PER`` comes out as two entities, two
        ``S-`` in a row as one): here ``S-`` is an entity of one token and ``E-`` ends the one
        before it, a departure only for such labels."""
        if label.startswith(("B-", "I-", "S-", "E-")):
            return label[0], label[2:]
        if label.startswith("M-"):
            return "I", label[2:]
        return "I", label

    def group_sub_entities(self, entities: list[dict]) -> dict:
        return {"entity_group": self.get_tag(entities[0]["entity"])[1],
                "score": float(np.nanmean([np.float32(e["score"]) for e in entities])),
                "word": decode([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one type grouped; a B- (or S-) label starts a new group, and an S-
        or E- label ends one."""
        groups, current = [], []
        for entity in entities:
            bi, tag = self.get_tag(entity["entity"])
            last_bi, last_tag = self.get_tag(current[-1]["entity"]) if current else ("", "")
            if current and (tag != last_tag or bi in ("B", "S") or last_bi in ("S", "E")):
                groups.append(self.group_sub_entities(current))
                current = []
            current.append(entity)
        if current:
            groups.append(self.group_sub_entities(current))
        return groups

    @staticmethod
    def aggregate_overlapping_entities(entities: list[dict]) -> list[dict]:
        """Entities from overlapping windows, by start: of two overlapping, the longer (then the
        more confident) is kept."""
        if not entities:
            return entities
        entities = sorted(entities, key=lambda e: e["start"])
        kept, previous = [], entities[0]
        for entity in entities:
            if previous["start"] <= entity["start"] < previous["end"]:
                longer = (entity["end"] - entity["start"]) - (previous["end"] - previous["start"])
                if longer > 0 or longer == 0 and entity["score"] > previous["score"]:
                    previous = entity
            else:
                kept.append(previous)
                previous = entity
        kept.append(previous)
        return kept
