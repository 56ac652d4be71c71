"""Goldens of a linear-chain CRF by its two references (run once; never needed by the tests):
pytorch-crf 0.7.2 (``pip install pytorch-crf==0.7.2``, module ``torchcrf``) and CLUENER2020's copy
of it (``pytorch_version/models/layers/crf.py``, the CRF of its BERT+CRF baseline):

    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    python tests/data/nn/crf/make_goldens.py /tmp/CLUENER2020

Writes ``crf_goldens.npz``: for each case ``c`` (batch, length, tags; rows of random lengths, one
all on, one of length 1), its inputs (``c/emissions`` [B,S,K] float64, ``c/tags`` [B,S], ``c/mask``
[B,S], ``c/start``, ``c/end``, ``c/transitions``) and each reference's results: ``c/pytorch_crf/<r>``
and ``c/cluener/<r>`` (the log-likelihood under reduction r: none, sum, mean, token_mean),
``c/pytorch_crf/decode`` and ``c/cluener/decode`` (the best paths [B,S], 0 after each row's end), and
``c/*/grad_*`` (the gradient of the "mean" log-likelihood in each parameter and the emissions).
float64 throughout, so a test can hold float32 code to float32's own error.
"""

import importlib.util
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {"small": (4, 6, 3), "cluener": (8, 40, 34), "conll": (5, 17, 9), "long": (3, 128, 7)}
REDUCTIONS = ("none", "sum", "mean", "token_mean")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(gen, B, S, K):
    lengths = torch.randint(1, S + 1, (B,), generator=gen)
    lengths[0], lengths[-1] = S, 1  # one row all on, one of a single position
    mask = (torch.arange(S).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.uint8)
    tags = torch.randint(0, K, (B, S), generator=gen) * mask  # 0 past the end, as padded labels
    emissions = torch.randn(B, S, K, generator=gen, dtype=torch.float64) * 3
    params = {k: torch.rand(*shape, generator=gen, dtype=torch.float64) * 0.2 - 0.1
              for k, shape in (("start", (K,)), ("end", (K,)), ("transitions", (K, K)))}
    return emissions, tags, mask, params


def _results(crf, emissions, tags, mask, params, decode):
    with torch.no_grad():
        crf.start_transitions.copy_(params["start"])
        crf.end_transitions.copy_(params["end"])
        crf.transitions.copy_(params["transitions"])
    out = {}
    for r in REDUCTIONS:
        out[r] = crf(emissions, tags, mask=mask, reduction=r).detach().numpy()
    e = emissions.clone().requires_grad_(True)
    crf.zero_grad()
    crf(e, tags, mask=mask, reduction="mean").backward()
    out.update(grad_emissions=e.grad.numpy(), grad_start=crf.start_transitions.grad.numpy(),
               grad_end=crf.end_transitions.grad.numpy(), grad_transitions=crf.transitions.grad.numpy())
    out["decode"] = decode(crf, emissions, mask)
    return out


def _pad(paths, S):
    return np.array([list(p) + [0] * (S - len(p)) for p in paths], dtype=np.int64)


def main(cluener_dir):
    import torchcrf
    cluener = _load(os.path.join(cluener_dir, "pytorch_version", "models", "layers", "crf.py"), "cluener_crf")
    gen = torch.Generator().manual_seed(20261207)
    arrays = {}
    for name, (B, S, K) in CASES.items():
        emissions, tags, mask, params = _case(gen, B, S, K)
        refs = {
            "pytorch_crf": _results(torchcrf.CRF(K, batch_first=True).double(), emissions, tags, mask, params,
                                    lambda crf, e, m: _pad(crf.decode(e, m), S)),
            "cluener": _results(cluener.CRF(K, batch_first=True).double(), emissions, tags, mask, params,
                                lambda crf, e, m: crf.decode(e, m).squeeze(0).numpy()),
        }
        arrays.update({f"{name}/emissions": emissions.numpy(), f"{name}/tags": tags.numpy(),
                       f"{name}/mask": mask.numpy(), **{f"{name}/{k}": v.numpy() for k, v in params.items()}})
        for ref, results in refs.items():
            arrays.update({f"{name}/{ref}/{k}": np.asarray(v) for k, v in results.items()})
    np.savez_compressed(os.path.join(HERE, "crf_goldens.npz"), **arrays)
    print(f"wrote {len(arrays)} arrays for {len(CASES)} cases, pytorch-crf {torchcrf.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main(sys.argv[1])
