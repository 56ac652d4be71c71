"""A fill-mask quiz: hide one word of sentences drawn at random from a text, and see whether a
pretrained BERT puts it among its top guesses.

What a person tries first with a masked language model is a sentence with a word hidden; this
measures that, on sentences the model did not train on, without choosing the ones it gets right:
the sentences and the hidden word of each are drawn by a seeded generator before the model is
asked. A word here is a run of letters (Google's BasicTokenizer splits on everything else), and the
hidden word is drawn among the sentence's words that are a single WordPiece of the model's
vocabulary: fill-mask predicts one piece per ``[MASK]``, so a word of several pieces has no one
right answer to rank. ``QuizResult.coverage`` says what share of all the words that is.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field

import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.inference import MASK, encode
from bertdetr.bert.model import BertForPreTraining
from bertdetr.errors import BertDetrError

WORD = re.compile(r"[^\W\d_]+")
"""A word: letters only (BasicTokenizer splits off punctuation, and digits are rare in prose)."""


@dataclass
class QuizItem:
    text: str
    """The sentence with the hidden word replaced by ``[MASK]``."""
    word: str
    """The hidden word as written in the sentence."""
    guesses: list[str]
    """The model's top guesses, best first."""
    probs: list[float]
    """Their probabilities."""

    @property
    def rank(self) -> int | None:
        """1-based place of the hidden word among the guesses (None: not among them)."""
        target = _normalise(self.word)
        return self.guesses.index(target) + 1 if target in self.guesses else None


@dataclass
class QuizResult:
    items: list[QuizItem]
    """One per drawn sentence, in the order drawn."""
    top_k: int
    """Guesses per sentence."""
    coverage: float
    """Share of all the words of the candidate sentences that are one WordPiece (the words a hidden
    word is drawn from)."""
    eligible_sentences: int = 0
    """Sentences the draw was made from."""
    hits: list[int] = field(default_factory=list)
    """Hits at each k = 1..top_k."""

    def rate(self, k: int | None = None) -> float:
        """Share of the sentences whose hidden word is among the top ``k`` (default: all) guesses."""
        k = self.top_k if k is None else k
        return sum(1 for it in self.items if it.rank is not None and it.rank <= k) / max(len(self.items), 1)


def _normalise(word: str) -> str:
    """The vocabulary's spelling of a word: lower case without accents (Google's uncased BERT)."""
    word = unicodedata.normalize("NFD", word.lower())
    return "".join(c for c in word if unicodedata.category(c) != "Mn")


def held_out_sentences(path: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    """The lines of ``path`` (one sentence a line, blank lines between documents) with
    ``min_words``..``max_words`` words: enough context to guess from, short enough for the model."""
    with open(path, encoding="utf-8") as f:
        lines = [" ".join(line.split()) for line in f]
    return [s for s in lines if min_words <= len(WORD.findall(s)) <= max_words]


def draw_hidden_words(tokenizer: FullTokenizer, sentences: list[str], n: int, seed: int,
                      max_tokens: int) -> tuple[list[tuple[str, int, int]], float, int]:
    """The quiz's draw: ``n`` of ``sentences`` that fit in ``max_tokens`` with [CLS] and [SEP]
    (without replacement, seeded) and in each one single-piece word (seeded). Returns the
    (sentence, start, end) of each hidden word, the share of the candidate sentences' words that
    are one WordPiece, and the number of candidate sentences."""
    single = lambda w: tokenizer.tokenize(w) == [_normalise(w)]  # noqa: E731
    words_seen = single_seen = 0
    candidates = []
    for s in sentences:
        if len(tokenizer.tokenize(s)) + 2 > max_tokens:
            continue  # the model cannot take the whole sentence: not asked, rather than cut
        spans = [m.span() for m in WORD.finditer(s)]
        ok = [sp for sp in spans if single(s[sp[0]:sp[1]])]
        words_seen, single_seen = words_seen + len(spans), single_seen + len(ok)
        if ok:
            candidates.append((s, ok))
    if len(candidates) < n:
        raise BertDetrError(f"only {len(candidates)} sentences to draw {n} from")
    rng = random.Random(seed)
    drawn = [(s, *rng.choice(spans)) for s, spans in rng.sample(candidates, n)]
    return drawn, single_seen / max(words_seen, 1), len(candidates)


@torch.no_grad()
def fill_mask_quiz(model: BertForPreTraining, tokenizer: FullTokenizer, sentences: list[str], n: int,
                   seed: int, top_k: int = 5, words_only: bool = True) -> QuizResult:
    """Draws ``n`` of ``sentences`` (those the model takes whole; without replacement, seeded) and in each one single-piece word
    (seeded), hides it, and asks ``model`` for its ``top_k`` guesses. The special tokens are never
    guessed (never an answer); with ``words_only`` the guesses are the vocabulary's whole words
    only, as the question is which word is hidden (not punctuation, nor a ``##`` continuation)."""
    if not tokenizer.do_lower_case:
        raise BertDetrError("the fill-mask quiz compares lower-cased words: it needs an uncased model")
    drawn, coverage, eligible = draw_hidden_words(tokenizer, sentences, n, seed, model.config.max_position_embeddings)
    excluded = [i for t, i in tokenizer.vocab.items()
                if (t.startswith("[") and t.endswith("]")) or (words_only and not WORD.fullmatch(t))]
    items = []
    for s, a, b in drawn:
        text = s[:a] + MASK + s[b:]
        ids = encode(tokenizer, text, model.config.max_position_embeddings)
        mask_id = tokenizer.vocab[MASK]
        out = model(input_ids=torch.tensor([ids]), input_mask=torch.ones(1, len(ids), dtype=torch.long),
                    segment_ids=torch.zeros(1, len(ids), dtype=torch.long),
                    masked_lm_positions=torch.tensor([[ids.index(mask_id)]]))
        logits = out["masked_lm_logits"][0, 0].float()
        logits[excluded] = float("-inf")
        probs = logits.softmax(-1)
        top = probs.topk(top_k)
        items.append(QuizItem(text, s[a:b], tokenizer.convert_ids_to_tokens(top.indices.tolist()),
                              top.values.tolist()))
    result = QuizResult(items, top_k, coverage, eligible)
    result.hits = [sum(1 for it in items if it.rank is not None and it.rank <= k) for k in range(1, top_k + 1)]
    return result


def frequency_guess_rate(result: QuizResult, tokenizer: FullTokenizer, train_path: str) -> tuple[float, list[str]]:
    """The quiz's baseline: the share of ``result``'s hidden words among the ``top_k`` single-piece
    words most common in ``train_path`` (the same guesses for every sentence), and those words."""
    from collections import Counter

    counts: Counter = Counter()
    with open(train_path, encoding="utf-8") as f:
        for line in f:
            counts.update(_normalise(w) for w in WORD.findall(line))
    common = [w for w, _ in counts.most_common() if tokenizer.tokenize(w) == [w]][: result.top_k]
    return sum(1 for it in result.items if _normalise(it.word) in common) / max(len(result.items), 1), common
