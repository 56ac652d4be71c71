"""Training speed against CPU threads on a shared machine: the demo's tiny BERT (2 layers, hidden
128, vocab 3000, 32 sequences of 64 tokens) for a few steps, once per setting, each in its own
process, side by side. Reports wall and CPU seconds of the process per step and what the process
could see: ``torch.get_num_threads()``, ``OMP_WAIT_POLICY``, its affinity, the load average.

    python bench/bench_threads.py [--steps 60] [--busy 0]

``--busy N`` starts N busy-loop processes for the run (load made on purpose); without it the
machine's own load is what it is (printed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time


def busy() -> None:
    while True:
        pass


def child(threads: str, steps: int) -> dict:
    import resource

    import torch

    from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
    from bertdetr.training.threads import choose_num_threads

    n = choose_num_threads(None if threads == "auto" else int(threads))
    torch.set_num_threads(n)
    torch.manual_seed(0)
    model = build_bert_for_pretraining(BertConfig(vocab_size=3000, hidden_size=128, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=512,
                                                  max_position_embeddings=64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    B, T, P = 32, 64, 10
    batch = {"input_ids": torch.randint(5, 3000, (B, T), generator=g), "input_mask": torch.ones(B, T, dtype=torch.long),
             "segment_ids": torch.zeros(B, T, dtype=torch.long),
             "masked_lm_positions": torch.randint(1, T, (B, P), generator=g),
             "masked_lm_ids": torch.randint(5, 3000, (B, P), generator=g),
             "masked_lm_weights": torch.ones(B, P), "next_sentence_labels": torch.randint(0, 2, (B,), generator=g)}

    def step():
        loss = model(**batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"threads": torch.get_num_threads(), "wall_s_per_step": (t1 - t0) / steps,
            "cpu_s_per_step": cpu / steps, "sequences_per_s": B * steps / (t1 - t0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--busy", type=int, default=0, help="busy-loop processes to start for the run")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    loops = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.busy)]
    for proc in loops:
        proc.start()
    if loops:
        time.sleep(20)  # let the load average see them
    print(f"# cpus {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, busy loops {args.busy}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print("| threads asked | OMP_WAIT_POLICY | threads | wall s/step | CPU s/step | sequences/s | load at start |")
    print("|---|---|---|---|---|---|---|")
    settings = [("2", None), ("1", None), ("2", "PASSIVE"), ("auto", None)]
    for threads, policy in settings:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        load = os.getloadavg()[0]
        out = subprocess.run([sys.executable, __file__, "--child", threads, str(args.steps)], env=env,
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {threads} | {policy or 'default'} | {r['threads']} | {r['wall_s_per_step']:.3f} | "
              f"{r['cpu_s_per_step']:.3f} | {r['sequences_per_s']:.0f} | {load:.2f} |", flush=True)
    for proc in loops:
        proc.terminate()


if __name__ == "__main__":
    main()
