"""The random-stream continuation (``bertdetr.bert.pretraining.draws``): the compiled ``Stream`` and
``PythonDraws`` against ``random.Random``'s own methods, call for call."""

import random

import pytest

from bertdetr.bert.pretraining import draws as dr


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 8, 9, 64, 65, 300])
def test_shuffle_is_randoms(n):
    for seed in range(20):
        ours, theirs = list(range(n)), list(range(n))
        r1, r2 = random.Random(seed), random.Random(seed)
        dr._shuffle(ours, r1)
        r2.shuffle(theirs)
        assert ours == theirs and r1.random() == r2.random()


needs_compiled = pytest.mark.skipif(dr._compiled is None, reason="bertdetr.bert.pretraining._speedups is not built")


def _stream_ops(draws, rng, ops: random.Random, steps=2000):
    """The same random calls on ``draws`` (a Stream or PythonDraws) and on ``rng`` (CPython's
    own methods), compared one by one."""
    for _ in range(steps):
        op = ops.randrange(7)
        if op == 0:
            assert draws.random() == rng.random()
        elif op == 1:
            n = ops.randrange(1, 2 ** ops.randrange(1, 33))
            assert draws.randbelow(n) == rng.randrange(n)
        elif op == 2:
            x = list(range(ops.randrange(300)))
            y = list(x)
            draws.shuffle(x)
            rng.shuffle(y)
            assert x == y
        elif op == 3:
            m = ops.randrange(40)
            assert draws.words(m) == rng.getrandbits(32 * m).to_bytes(4 * m, "little")
        elif op == 4 and hasattr(draws, "getrandbits"):
            k = ops.randrange(33)
            assert draws.getrandbits(k) == rng.getrandbits(k)
        elif op == 5:
            tokens = list(range(100, 130))
            chosen = ops.sample(range(30), ops.randrange(31))
            word_ids = list(range(ops.randrange(1, 40000)))
            got = draws.mask(tokens, chosen, -1, word_ids)
            assert got + (tokens,) == _googles_masking(rng, list(range(100, 130)), chosen, word_ids)
        elif op == 6:
            num_tokens = ops.randrange(3, 300)
            len_a = ops.randrange(num_tokens - 2)
            num_to_predict = ops.randrange(1, 30)
            tokens = list(range(1000, 1000 + num_tokens))
            word_ids = list(range(ops.randrange(1, 40000)))
            got = draws.masked_lm(tokens, len_a, num_to_predict, -1, word_ids)
            # Google: [CLS] and [SEP] are no candidates; shuffle; the first num_to_predict.
            candidates = [i for i in range(1, num_tokens - 1) if i != len_a + 1]
            rng.shuffle(candidates)
            expected = list(range(1000, 1000 + num_tokens))
            assert got + (tokens,) == _googles_masking(rng, expected, candidates[:num_to_predict], word_ids)


def _googles_masking(rng, tokens, chosen, word_ids):
    """(sorted positions, original tokens there, masked tokens): Google's 80/10/10 with randint."""
    positions = sorted(chosen)
    labels = [tokens[i] for i in positions]
    for index in chosen:
        if rng.random() < 0.8:
            tokens[index] = -1
        elif rng.random() < 0.5:
            pass
        else:
            tokens[index] = word_ids[rng.randint(0, len(word_ids) - 1)]
    return positions, labels, tokens


@needs_compiled
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**40 + 3])
def test_stream_continues_randoms_stream(seed):
    rng, ours = random.Random(seed), random.Random(seed)
    for _ in range(seed % 7):  # start mid-block too
        rng.random(), ours.random()
    stream = dr._compiled.Stream(ours.getstate()[1])
    _stream_ops(stream, rng, random.Random(seed + 1))
    assert stream.getstate() == rng.getstate()[1]


def test_python_draws_are_randoms():
    for seed in range(3):
        rng = random.Random(seed)
        ours = random.Random(seed)
        _stream_ops(dr.PythonDraws(ours), rng, random.Random(seed + 1), steps=500)
        assert ours.getstate() == rng.getstate()


def test_draws_hand_the_state_back(code_path):
    """After the block, the rng is where random.Random's own calls would have left it."""
    rng, reference = random.Random(3), random.Random(3)
    reference.gauss(0, 1)  # a pending gauss_next is kept too
    rng.gauss(0, 1)
    with dr.draws_of(rng) as draws:
        assert isinstance(draws, dr.PythonDraws) == (code_path == "python")
        x, y = list(range(50)), list(range(50))
        draws.shuffle(x)
        reference.shuffle(y)
        assert x == y and draws.random() == reference.random()
    assert rng.getstate() == reference.getstate()


@needs_compiled
def test_stream_rejects_bad_input():
    stream = dr._compiled.Stream(random.Random(0).getstate()[1])
    for bad in (0, -1, 2**32, 2**70):
        with pytest.raises((ValueError, OverflowError)):
            stream.randbelow(bad)
    with pytest.raises(ValueError):
        stream.getrandbits(33)
    with pytest.raises(TypeError):
        stream.shuffle((1, 2))
    with pytest.raises(IndexError):
        stream.mask([1, 2], [2], 0, [5])
    with pytest.raises(ValueError):
        stream.mask([1, 2], [1], 0, [])
    with pytest.raises(ValueError):
        stream.masked_lm([1, 2, 3, 4], 2, 1, 0, [5])  # len_a + 3 > len(tokens)
    state = random.Random(0).getstate()[1]
    for bad in (state[:-1], state[:-1] + (625,), (2**32,) + state[1:]):
        with pytest.raises(ValueError):
            dr._compiled.Stream(bad)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 100])
def test_coin_flips_are_randoms(code_path, n):
    """coin_flips(draws, n): byte t < 128 exactly when the t-th rng.random() < 0.5."""
    for seed in range(5):
        rng, reference = random.Random(seed), random.Random(seed)
        with dr.draws_of(rng) as draws:
            flips = dr.coin_flips(draws, n)
        assert [b < 128 for b in flips] == [reference.random() < 0.5 for _ in range(n)]
        assert rng.getstate() == reference.getstate()
