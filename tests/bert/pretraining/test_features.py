"""make-data's record encoder (``bertdetr.bert.pretraining.features``): ``ExampleEncoder`` and the
compiled varints, against the generic codec of ``bertdetr.bert.data.records``."""

import random

import numpy as np
import pytest

from bertdetr.bert.data.records import encode_varint, parse_example
from bertdetr.bert.pretraining import features
from bertdetr.bert.pretraining.create_pretraining_data import TrainingInstance
from bertdetr.bert.pretraining.features import ExampleEncoder


@pytest.mark.skipif(features._compiled is None, reason="bertdetr.bert.pretraining._speedups is not built")
def test_varints():
    rng = random.Random(0)
    for _ in range(500):
        ids = [rng.randrange(2 ** rng.randrange(1, 33)) for _ in range(rng.randrange(60))]
        assert features._compiled.varints(ids) == b"".join(map(encode_varint, ids))
    for bad in ([2**32], [-1]):
        with pytest.raises(OverflowError):
            features._compiled.varints(bad)
    # Any sequence of ints or of objects with __index__, as the table path takes.
    ids = [0, 127, 128, 30521, 2**32 - 1]
    expected = b"".join(map(encode_varint, ids))
    assert features._compiled.varints(tuple(ids)) == expected
    assert features._compiled.varints(np.array(ids, dtype=np.int64)) == expected
    with pytest.raises(TypeError):
        features._compiled.varints([1.0])


def test_encoder_positions_beyond_128():
    enc = ExampleEncoder(300, 4, 30522)
    inst = TrainingInstance([101] + [2000] * 250 + [102, 2001, 102], 250, [1, 200, 251], [2000, 2000, 102],
                               True)
    got = parse_example(enc.encode(inst))
    assert got["masked_lm_positions"].tolist() == [1, 200, 251, 0]
    assert got["segment_ids"].tolist() == [0] * 252 + [1] * 2 + [0] * 46
