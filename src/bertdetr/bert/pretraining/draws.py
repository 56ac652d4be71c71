"""make-data's random draws: one shard's ``random.Random`` stream, continued draw for draw.

Google's ``create_pretraining_data.py`` makes every random decision through one
``random.Random(random_seed)``; equal records need the same decisions from the same 32-bit words
of that Mersenne Twister, in the same order. ``bertdetr.bert.pretraining.create_pretraining_data`` makes its draws
through the object this module hands out (``draws_of(rng)``), which is either

- ``bertdetr.bert.pretraining._speedups.Stream`` (``_speedups.c``, built by ``pip install`` or
  ``python setup.py build_ext --inplace``): the same MT19937 continued in C from ``rng``'s state,
  which is handed back to ``rng`` at the end; or
- ``PythonDraws``: the same calls made on ``rng`` itself, without the Python-level wrappers of
  ``random.Random`` (``shuffle`` and ``randint`` cost a Python ``_randbelow`` call per draw).

This is the one place that says which draws they continue. Each method consumes exactly the words
CPython's (3.10-3.13) own call would (``Lib/random.py``, ``Modules/_randommodule.c``); Google's
call -> the method here: the words of the stream it takes.

- ``rng.random()`` -> ``random()``: two words a, b, giving ((a >> 5) * 2**26 + (b >> 6)) / 2**53.
- ``rng.randint(a, b)`` -> ``a + randbelow(b - a + 1)``: ``_randbelow(n)``, the top
  ``n.bit_length()`` bits of a word, again until they are below n.
- ``rng.shuffle(x)`` -> ``shuffle(x)``: x[i] swapped with x[_randbelow(i + 1)], i = len(x) - 1
  down to 1.
- ``truncate_seq_pair``'s ``rng.random() < 0.5``, one a pop -> ``coin_flips(draws, n)``: the 2n
  words of n ``random()`` calls, in one call (``words(2n)``).
- ``create_masked_lm_predictions``' 80/10/10, for each chosen position in the order chosen ->
  ``mask(tokens, chosen, mask_id, word_ids)``: ``random()``, maybe a second ``random()``, maybe
  ``_randbelow(len(vocab))``.
- the same without whole-word masking, candidate shuffle included -> ``masked_lm(tokens, len_a,
  num_to_predict, mask_id, word_ids)``: ``shuffle`` of the candidate positions, then ``mask``'s.

The tests (``tests/bert/test_draws.py``) run both against ``random.Random``'s own methods call
for call; the make-data tests against Google's records run on both (the ``code_path`` fixture),
and one compares the two paths' files byte for byte.
"""

from __future__ import annotations

import contextlib
import functools
import random
from typing import Callable, Iterator, Union

try:  # the draws in C (setup.py builds it: pip install, or python setup.py build_ext --inplace)
    from bertdetr.bert.pretraining import _speedups as _compiled
except ImportError:  # pragma: no cover - PythonDraws makes the same draws
    _compiled = None

__all__ = ["PythonDraws", "draws_of", "coin_flips"]


def _randbelow_fn(rng: random.Random) -> Callable[[int], int]:
    getrandbits = rng.getrandbits

    def randbelow(n: int) -> int:
        """``rng._randbelow(n)``: ``getrandbits(n.bit_length())`` until the value is below n."""
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    return randbelow


def _shuffle(x: list, rng: random.Random) -> None:
    """``rng.shuffle(x)``, same result and same words consumed.

    ``_randbelow(i + 1)`` draws ``getrandbits(k)``, k = (i + 1).bit_length(), until the value is
    <= i; we run the i of equal k as one inner loop, so k is computed once per power of two.
    """
    getrandbits = rng.getrandbits
    top = len(x) - 1
    k = (top + 1).bit_length()
    while k >= 2:
        low = max((1 << (k - 1)) - 1, 1)  # the smallest i with (i + 1).bit_length() == k
        for i in range(top, low - 1, -1):
            j = getrandbits(k)
            while j > i:
                j = getrandbits(k)
            x[i], x[j] = x[j], x[i]
        top = low - 1
        k -= 1


class PythonDraws:
    """The draws of make-data, made on ``rng`` itself (the path without the compiled module).

    The same methods as ``bertdetr.bert.pretraining._speedups.Stream``, with the same results and the same
    words consumed (see the module's table).
    """

    def __init__(self, rng: random.Random):
        self.random = rng.random
        self.randbelow = _randbelow_fn(rng)
        self.shuffle = functools.partial(_shuffle, rng=rng)
        self.words = lambda m: rng.getrandbits(32 * m).to_bytes(4 * m, "little")
        self._positions: list[int] = []

    def mask(self, tokens: list, chosen: list, mask_id: int, word_ids: list) -> tuple[list, list]:
        """The end of Google's ``create_masked_lm_predictions`` for the ``chosen`` positions
        (distinct, in the order chosen): returns the positions sorted (Google sorts its
        masked_lms by index) and the original tokens there; applies the 80/10/10 to ``tokens``."""
        positions = sorted(chosen)
        labels = list(map(tokens.__getitem__, positions))
        random_, randbelow = self.random, self.randbelow
        for index in chosen:
            if random_() < 0.8:  # 80%: [MASK]
                tokens[index] = mask_id
            elif random_() < 0.5:  # 10%: keep the original
                pass
            else:  # 10%: a random word, vocab_words[rng.randint(0, len(vocab_words) - 1)]
                tokens[index] = word_ids[randbelow(len(word_ids))]
        return positions, labels

    def masked_lm(self, tokens: list, len_a: int, num_to_predict: int, mask_id: int,
                  word_ids: list) -> tuple[list, list]:
        """Google's ``create_masked_lm_predictions`` without whole-word masking, for ``tokens``
        = [CLS] A [SEP] B [SEP] with ``len(A) == len_a``: every position but [CLS] and the two
        [SEP] is a candidate of its own; the candidates are shuffled and the first
        ``num_to_predict`` masked (``mask``)."""
        num_tokens = len(tokens)
        positions = self._positions
        if len(positions) < num_tokens:
            positions[:] = range(num_tokens)
        candidates = positions[1:len_a + 1] + positions[len_a + 2:num_tokens - 1]
        self.shuffle(candidates)  # rng.shuffle(cand_indexes)
        return self.mask(tokens, candidates[:num_to_predict], mask_id, word_ids)


Draws = Union[PythonDraws, "_compiled.Stream"]
"""What ``draws_of`` yields: ``random``, ``randbelow``, ``shuffle``, ``words``, ``mask``,
``masked_lm``."""


@contextlib.contextmanager
def draws_of(rng: random.Random) -> Iterator[Draws]:
    """The draws of ``rng``, in C when the compiled module is built.

    The compiled ``Stream`` continues ``rng``'s Mersenne Twister from its state and hands the state
    back when the block ends, so ``rng`` is then exactly where the pure-Python path (and Google's
    run) leaves it. Do not draw from ``rng`` itself inside the block. A subclass of
    ``random.Random`` (which may override its methods) always takes the pure-Python path.
    """
    if _compiled is None or type(rng) is not random.Random:
        yield PythonDraws(rng)
        return
    version, internal, gauss_next = rng.getstate()
    stream = _compiled.Stream(internal)
    try:
        yield stream
    finally:
        rng.setstate((version, stream.getstate(), gauss_next))


def coin_flips(draws: Draws, n: int) -> bytes:
    """``n`` of Google's ``rng.random() < 0.5`` in one draw: byte t is below 128 exactly when flip
    t is True.

    ``random()`` takes two words w1, w2 and is (w1 >> 5) * 2**-27 + (w2 >> 6) * 2**-53, so
    ``random() < 0.5`` <=> w1 < 2**31 <=> the top bit of w1 is 0. ``words(2n)`` draws the same 2n
    words in order, each as 4 little-endian bytes: w1 of flip t is bytes 8t..8t+3, its top bit
    the high bit of byte 8t + 3.
    """
    return draws.words(2 * n)[3::8]
