"""The CRF of ``bert ner --crf`` against its references on CLUENER-sized batches, side by side.

    pip install pytorch-crf==0.7.2        # the original (module torchcrf); left out if missing
    git clone https://github.com/CLUEbenchmark/CLUENER2020 /tmp/CLUENER2020
    python bench/bench_crf.py --cluener /tmp/CLUENER2020 [--batch 24] [--length 52] [--tags 34] [--repeats 20]

Each side gets the same parameters and the same random emissions [B,S,K] (float32; rows of random
lengths up to S, as a batch cut to its longest row), and is timed on the two things a BERT+CRF run
does with it: the training loss (the mean log-likelihood, its forward and backward) and decoding
(the best path of every row, ending on the host as a list of tag ids per row, which is what the
predictions need). Defaults: CLUENER2020's baseline (``run_ner_crf.sh``: 24 rows a batch; 34 tags,
its label list; texts of at most 50 characters with [CLS] and [SEP]). One process, the sides
alternating, the median of ``--repeats``; results checked equal first. Threads: torch's default
unless ``--threads``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import torch

from bertdetr.nn.crf import CRF


def _cluener_crf(path: str):
    spec = importlib.util.spec_from_file_location("cluener_crf", os.path.join(
        path, "pytorch_version", "models", "layers", "crf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CRF


def _sides(K: int, cluener: str | None):
    ours = CRF(K)
    sides = {"ours": (ours, lambda crf, e, m: [row[:n].tolist() for row, n in zip(crf.decode(e, m), m.sum(1).tolist())])}
    if cluener:
        sides["CLUENER2020"] = (_cluener_crf(cluener)(K, batch_first=True), lambda crf, e, m: [
            row[:n].tolist() for row, n in zip(crf.decode(e, m.byte()).squeeze(0), m.sum(1).tolist())])
    try:
        import torchcrf

        sides[f"pytorch-crf {torchcrf.__version__}"] = (torchcrf.CRF(K, batch_first=True),
                                                        lambda crf, e, m: crf.decode(e, m.byte()))
    except ImportError:
        print("pytorch-crf not installed: left out")
    for crf, _ in sides.values():
        crf.load_state_dict(ours.state_dict())
    return sides


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cluener", help="a clone of CLUEbenchmark/CLUENER2020 (its CRF); left out if not given")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--length", type=int, default=52)
    p.add_argument("--tags", type=int, default=34)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    B, S, K = args.batch, args.length, args.tags
    lengths = torch.randint(S // 3, S + 1, (B,), generator=g)
    lengths[0] = S
    mask = torch.arange(S)[None] < lengths[:, None]
    emissions = torch.randn(B, S, K, generator=g) * 3
    tags = torch.randint(0, K, (B, S), generator=g) * mask
    sides = _sides(K, args.cluener)
    base_llh, base_paths = None, None
    for name, (crf, decode) in sides.items():
        m = mask if name == "ours" else mask.byte()
        llh, paths = crf(emissions, tags, m, reduction="mean"), decode(crf, emissions, mask)
        if base_llh is None:
            base_llh, base_paths = llh, paths
        torch.testing.assert_close(llh, base_llh, rtol=1e-5, atol=1e-4)
        assert paths == base_paths, name
    print(f"B={B} S={S} K={K}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"results equal on every side")
    rows = {}
    for name, (crf, decode) in sides.items():
        m = mask if name == "ours" else mask.byte()
        e = emissions.clone().requires_grad_(True)

        def loss():
            crf.zero_grad()
            e.grad = None
            (-crf(e, tags, m, reduction="mean")).backward()

        rows[name] = (_time(loss, args.repeats), _time(lambda: decode(crf, emissions, mask), args.repeats))
    ours = rows["ours"]
    print(f"{'side':<22} {'loss fwd+bwd ms':>16} {'decode ms':>10} {'loss: x ours':>13} {'decode: x ours':>15}")
    for name, (lt, dt) in rows.items():
        print(f"{name:<22} {lt * 1e3:>16.2f} {dt * 1e3:>10.2f} {lt / ours[0]:>13.2f} {dt / ours[1]:>15.2f}")


if __name__ == "__main__":
    main()
