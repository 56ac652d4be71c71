"""The CRF against its references' goldens (pytorch-crf 0.7.2 and CLUENER2020's copy of it:
``tests/data/nn/crf/make_goldens.py``), then its edge cases."""

import os

import numpy as np
import pytest
import torch

from bertdetr.errors import BertDetrError
from bertdetr.nn.crf import CRF, REDUCTIONS

GOLDENS = os.path.join(os.path.dirname(__file__), "..", "data", "nn", "crf", "crf_goldens.npz")
CASES = ("small", "cluener", "conll", "long")


@pytest.fixture(scope="module")
def goldens():
    with np.load(GOLDENS) as g:
        return {k: g[k] for k in g.files}


def _crf(g, case, dtype=torch.float64):
    K = g[f"{case}/start"].shape[0]
    crf = CRF(K).to(dtype)
    with torch.no_grad():
        crf.start_transitions.copy_(torch.from_numpy(g[f"{case}/start"]))
        crf.end_transitions.copy_(torch.from_numpy(g[f"{case}/end"]))
        crf.transitions.copy_(torch.from_numpy(g[f"{case}/transitions"]))
    return crf, torch.from_numpy(g[f"{case}/emissions"]).to(dtype), torch.from_numpy(g[f"{case}/tags"]), \
        torch.from_numpy(g[f"{case}/mask"]).bool()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ref", ["pytorch_crf", "cluener"])
def test_log_likelihood_equals_references(goldens, case, ref):
    crf, emissions, tags, mask = _crf(goldens, case)
    for r in REDUCTIONS:
        np.testing.assert_allclose(crf(emissions, tags, mask, reduction=r).detach().numpy(),
                                   goldens[f"{case}/{ref}/{r}"], rtol=1e-12, atol=1e-10, err_msg=r)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ref", ["pytorch_crf", "cluener"])
def test_gradients_equal_references(goldens, case, ref):
    crf, emissions, tags, mask = _crf(goldens, case)
    emissions.requires_grad_(True)
    crf(emissions, tags, mask).backward()
    for name, got in (("emissions", emissions.grad), ("start", crf.start_transitions.grad),
                      ("end", crf.end_transitions.grad), ("transitions", crf.transitions.grad)):
        np.testing.assert_allclose(got.numpy(), goldens[f"{case}/{ref}/grad_{name}"], rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_decode_equals_references(goldens, case):
    crf, emissions, _, mask = _crf(goldens, case)
    assert np.array_equal(goldens[f"{case}/pytorch_crf/decode"], goldens[f"{case}/cluener/decode"])
    assert np.array_equal(crf.decode(emissions, mask).numpy(), goldens[f"{case}/cluener/decode"])


@pytest.mark.parametrize("case", CASES)
def test_float32_within_float32_error(goldens, case):
    crf, emissions, tags, mask = _crf(goldens, case, torch.float32)
    got = crf(emissions, tags, mask, reduction="none").detach().numpy()
    np.testing.assert_allclose(got, goldens[f"{case}/cluener/none"], rtol=1e-5, atol=1e-3)
    assert np.array_equal(crf.decode(emissions, mask).numpy(), goldens[f"{case}/cluener/decode"])


def test_decode_is_the_best_path_by_brute_force():
    """Viterbi's path scores highest of all K**S paths (and the likelihood sums them all)."""
    gen = torch.Generator().manual_seed(0)
    crf = CRF(3).double()
    emissions = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    best = crf.decode(emissions, mask)
    for row, length in enumerate((5, 3)):
        paths = torch.cartesian_prod(*[torch.arange(3)] * length)
        full = torch.zeros(len(paths), 5, dtype=torch.long)
        full[:, :length] = paths
        e, m = emissions[row:row + 1].expand(len(paths), 5, 3), mask[row:row + 1].expand(len(paths), 5)
        scores = crf._compute_score(e, full, m)
        assert torch.equal(best[row, :length], paths[scores.argmax()])
        assert torch.all(best[row, length:] == 0)
        # the log-likelihoods of all paths sum to one
        assert torch.logsumexp(crf(e, full, m, reduction="none"), 0).abs() < 1e-12


def test_no_mask_is_all_on():
    crf = CRF(4)
    emissions, tags = torch.randn(2, 6, 4), torch.randint(0, 4, (2, 6))
    assert torch.equal(crf(emissions, tags), crf(emissions, tags, torch.ones(2, 6, dtype=torch.uint8)))
    assert torch.equal(crf.decode(emissions), crf.decode(emissions, torch.ones(2, 6)))


def test_bad_shapes_and_reduction_say_what():
    crf = CRF(4)
    with pytest.raises(BertDetrError, match=r"emissions must be \[B, S, 4\]"):
        crf(torch.randn(2, 6, 5), torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(BertDetrError, match="tags must be"):
        crf(torch.randn(2, 6, 4), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(BertDetrError, match="mask must be"):
        crf.decode(torch.randn(2, 6, 4), torch.ones(2, 5))
    with pytest.raises(BertDetrError, match="reduction"):
        crf(torch.randn(2, 6, 4), torch.zeros(2, 6, dtype=torch.long), reduction="avg")
    with pytest.raises(BertDetrError, match="at least one tag"):
        CRF(0)
