"""BERT pretraining model: bertdetr vs transformers BertForPreTraining (attn_implementation="sdpa").

Same config, weights, batch and data on both sides, fp32 on CPU, ``torch.set_num_threads(2)``:

- training step (forward + backward + AdamW, the same ``torch.optim.AdamW`` settings for both,
  ``fused=True``), sequences/s, dropout on (0.1, as pretraining);
- inference (sequence output under ``torch.inference_mode``), sequences/s;
- peak memory of a training step, each side in a fresh process: VmHWM (peak RSS) reset through
  ``/proc/self/clear_refs`` after a warm-up step, so the figure is the step's peak above the
  steady state (weights, grads, AdamW state, data), plus the process's peak RSS overall;
- our bf16 autocast and ``torch.compile`` paths, and model FLOPs utilisation against this CPU's
  measured matmul peaks (about 210 GFLOP/s fp32 and 900 GFLOP/s bf16 on 2 threads). Each row
  counts the matmul FLOPs its implementation executes: ours with the MLM head (and the last
  layer's queries and feed-forward) at the masked positions only, HF's at every position, so HF's
  MFU is its hardware use, not useful work; the speed ratio is the seq/s ratio.

Our and HF's timed steps alternate (several repeats, medians), so load from other processes on
the machine hits both sides alike and the ratios stay meaningful.

    python bench/bench_bert_model.py                 # everything, ~10 min on 2 cores
    python bench/bench_bert_model.py --configs small --repeats 3 --no-compile
    python bench/bench_bert_model.py --device cuda --batch 64 --repeats 20   # on a GPU

On a GPU (``--device cuda``): steps are timed with synchronisation, both sides also run under
bf16 autocast, memory is ``torch.cuda.max_memory_allocated`` of a step in the same process, and
MFU is against the H100's dense peaks (fp32 without TF32, bf16 tensor cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from bert_flops import num_flops_per_sequence
from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.weights import to_hf_state_dict

PEAK_GFLOPS = {"fp32": 210.0, "bf16": 900.0}
GPU_PEAK_GFLOPS = {"fp32": 67_000.0, "bf16": 989_000.0}  # H100 SXM dense
DEVICE = torch.device("cpu")  # --device
CONFIGS = {
    # name: (config, batch, seq length, max_predictions_per_seq as Google's README for that length)
    "base": (BertConfig(), 8, 128, 20),
    "small": (BertConfig(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024), 32, 128, 20),
}


def make_batch(config: BertConfig, B: int, T: int, P: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch laid out as Google's pretraining TFRecords: some short rows padded, 15% of real
    tokens masked (at most P), prediction slots padded with weight 0."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, config.vocab_size, (B, T), generator=g)
    lengths = [T if b % 4 else int(torch.randint(T // 2, T, (1,), generator=g)) for b in range(B)]
    input_mask = torch.zeros(B, T, dtype=torch.long)
    segment_ids = torch.zeros(B, T, dtype=torch.long)
    positions = torch.zeros(B, P, dtype=torch.long)
    ids = torch.zeros(B, P, dtype=torch.long)
    weights = torch.zeros(B, P)
    for b, n in enumerate(lengths):
        input_mask[b, :n] = 1
        input_ids[b, n:] = 0
        segment_ids[b, n // 2:n] = 1
        k = min(P, max(1, round(0.15 * n)))
        pos = torch.randperm(n - 1, generator=g)[:k] + 1
        positions[b, :k] = pos.sort().values
        ids[b, :k] = input_ids[b, positions[b, :k]]
        weights[b, :k] = 1.0
    return dict(input_ids=input_ids, input_mask=input_mask, segment_ids=segment_ids, masked_lm_positions=positions,
                masked_lm_ids=ids, masked_lm_weights=weights,
                next_sentence_labels=torch.randint(0, 2, (B, 1), generator=g))


def hf_inputs(f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    labels = torch.full_like(f["input_ids"], -100)
    for b in range(labels.shape[0]):
        keep = f["masked_lm_weights"][b] > 0
        labels[b, f["masked_lm_positions"][b][keep]] = f["masked_lm_ids"][b][keep]
    return dict(input_ids=f["input_ids"], attention_mask=f["input_mask"], token_type_ids=f["segment_ids"],
                labels=labels, next_sentence_label=f["next_sentence_labels"].view(-1))


def build_pair(name: str, want_hf: bool = True, batch: int | None = None):
    """Our model and HF's with the same weights, on DEVICE, and a batch there."""
    config, B, T, P = CONFIGS[name]
    B = batch or B
    torch.manual_seed(0)
    ours = build_bert_for_pretraining(config)
    hf = None
    if want_hf:
        import transformers

        hf = transformers.BertForPreTraining(transformers.BertConfig(**config.to_hf_dict(), attn_implementation="sdpa"))
        missing, unexpected = hf.load_state_dict(to_hf_state_dict(ours.state_dict(), config), strict=False)
        assert not unexpected and set(missing) <= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
        hf.tie_weights()
        hf.to(DEVICE)
    ours.to(DEVICE)
    return config, ours, hf, {k: v.to(DEVICE) for k, v in make_batch(config, B, T, P).items()}


def optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)


def ours_train_step(model, opt, f, autocast: bool = False):
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=autocast):
        loss = model(**f)["loss"]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def hf_train_step(model, opt, hf_f, autocast: bool = False):
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=autocast):
        loss = model(**hf_f).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def hf_train_flops_per_sequence(config: BertConfig, T: int) -> float:
    """Matmul FLOPs of HF's training step per sequence: every layer at every position and the MLM
    transform + vocabulary projection at all T positions (what it executes for the same losses)."""
    D, V = config.hidden_size, config.vocab_size
    encoder = num_flops_per_sequence(config, T, 0, training=False) - 2 * D * D  # without the pooler
    return 3.0 * (encoder + 2 * T * (D * D + D * V) + 2 * (D * D + 2 * D))


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: user + system, all threads)."""
    sync()
    t, c = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - t, time.process_time() - c


def alternate(fns: dict[str, callable], repeats: int, warmup: int = 1) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds per call of each fn, ``repeats`` calls each, interleaved round-robin."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return times


def report(rows: list[dict], name: str, what: str, times: list[tuple[float, float]], B: int,
           flops_per_seq: float, peak: str):
    """Median-based seq/s, GFLOP/s and MFU; the best (least disturbed) step and the median CPU
    seconds per step (the work done, less sensitive than wall time to other load) beside them."""
    wall = [w for w, _ in times]
    secs = statistics.median(wall)
    gflops = flops_per_seq * B / secs / 1e9
    peaks = GPU_PEAK_GFLOPS if DEVICE.type == "cuda" else PEAK_GFLOPS
    row = dict(config=name, what=what, seq_per_s=round(B / secs, 2), step_s=round(secs, 4),
               best_seq_per_s=round(B / min(wall), 2), cpu_s=round(statistics.median(c for _, c in times), 3),
               gflops=round(gflops, 1), mfu=round(gflops / peaks[peak], 3), peak=peak)
    rows.append(row)
    print(json.dumps(row), flush=True)


def run_speed(name: str, repeats: int, compile_: bool, bf16: bool, rows: list[dict], batch: int | None = None) -> None:
    config, ours, hf, f = build_pair(name, batch=batch)
    _, B, T, P = CONFIGS[name]
    B = batch or B
    hf_f = hf_inputs(f)
    train_flops = num_flops_per_sequence(config, T, P, training=True)
    infer_flops = num_flops_per_sequence(config, T, 0, training=False)  # encoder + pooler

    # Same weights, same batch: the eval-mode losses agree (a sanity check of the comparison).
    ours.eval()
    hf.eval()
    with torch.no_grad():
        lo, lh = ours(**f)["loss"].item(), hf(**hf_f).loss.item()
    print(f"# {name}: eval loss ours {lo:.6f} hf {lh:.6f}", flush=True)
    assert abs(lo - lh) < 1e-3 * max(1.0, abs(lh))

    # inference: sequence output
    ins = (f["input_ids"], f["segment_ids"], f["input_mask"])

    def ours_infer():
        with torch.inference_mode():
            ours.bert(*ins)

    def hf_infer():
        with torch.inference_mode():
            hf.bert(input_ids=ins[0], token_type_ids=ins[1], attention_mask=ins[2])

    t = alternate({"ours": ours_infer, "hf": hf_infer}, repeats)
    report(rows, name, "inference fp32 ours", t["ours"], B, infer_flops, "fp32")
    report(rows, name, "inference fp32 hf", t["hf"], B, infer_flops, "fp32")

    ours.train()
    hf.train()
    o_opt, h_opt = optimizer(ours), optimizer(hf)
    fns = {"ours": lambda: ours_train_step(ours, o_opt, f), "hf": lambda: hf_train_step(hf, h_opt, hf_f)}
    if bf16:
        fns["ours_bf16"] = lambda: ours_train_step(ours, o_opt, f, autocast=True)
        if DEVICE.type == "cuda":  # on a GPU bf16 is how both are used, so HF's too
            fns["hf_bf16"] = lambda: hf_train_step(hf, h_opt, hf_f, autocast=True)
    t = alternate(fns, repeats)
    report(rows, name, "train fp32 ours", t["ours"], B, train_flops, "fp32")
    report(rows, name, "train fp32 hf", t["hf"], B, hf_train_flops_per_sequence(config, T), "fp32")
    if bf16:
        report(rows, name, "train bf16-autocast ours", t["ours_bf16"], B, train_flops, "bf16")
    if "hf_bf16" in t:
        report(rows, name, "train bf16-autocast hf", t["hf_bf16"], B, hf_train_flops_per_sequence(config, T), "bf16")
    if DEVICE.type == "cuda":
        for impl, step in (("ours", lambda: ours_train_step(ours, o_opt, f)),
                           ("hf", lambda: hf_train_step(hf, h_opt, hf_f))):
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            sync()
            row = dict(config=name, what=f"train step memory {impl}",
                       step_peak_mb=round((torch.cuda.max_memory_allocated() - base) / 2**20, 1),
                       peak_rss_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
    hf = h_opt = None  # freed before the compiled runs

    if compile_:
        # Compiled and eager steps alternate too; the compile itself is the first call, timed alone.
        compiled = torch.compile(ours)
        fns = {}
        for autocast in ((False, True) if bf16 else (False,)):
            tag = "bf16-autocast" if autocast else "fp32"
            t0 = time.perf_counter()
            ours_train_step(compiled, o_opt, f, autocast)
            print(f"# {name}: torch.compile {tag} first step (compile) {time.perf_counter() - t0:.1f}s", flush=True)
            fns[f"train {tag} ours eager"] = lambda a=autocast: ours_train_step(ours, o_opt, f, a)
            fns[f"train {tag} ours torch.compile"] = lambda a=autocast: ours_train_step(compiled, o_opt, f, a)
        for what, times in alternate(fns, repeats).items():
            report(rows, name, what, times, B, train_flops, "bf16" if "bf16" in what else "fp32")


def memory_child(name: str, impl: str) -> None:
    """Runs in a fresh process: peak RSS of one training step above the steady state."""
    import transformers  # noqa: F401  (imported on both sides, so the steady states compare)

    torch.set_num_threads(2)
    config, ours, hf, f = build_pair(name, want_hf=impl == "hf")
    model = ours if impl == "ours" else hf
    ours = hf = None  # only the measured model stays alive
    model.train()
    opt = optimizer(model)
    step = (lambda: ours_train_step(model, opt, f)) if impl == "ours" else (lambda: hf_train_step(model, opt, hf_inputs(f)))
    step()  # AdamW state allocated
    status = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
    steady = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    step()
    step()
    print(json.dumps(dict(steady_mb=steady / 2**20, step_peak_mb=(status("VmHWM:") - steady) / 2**20,
                          peak_rss_mb=status("VmHWM:") / 2**20)))


def run_memory(name: str, rows: list[dict]) -> None:
    res = {}
    for impl in ("ours", "hf"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", name, impl], check=True,
                             capture_output=True, text=True).stdout
        res[impl] = json.loads(out.strip().splitlines()[-1])
        row = dict(config=name, what=f"train step memory {impl}", **{k: round(v, 1) for k, v in res[impl].items()})
        rows.append(row)
        print(json.dumps(row), flush=True)


def summary(rows: list[dict]) -> None:
    """Ours / HF ratios per config: throughput (medians, and best steps), step peak memory."""
    by = {(r["config"], r["what"]): r for r in rows}
    for name in dict.fromkeys(r["config"] for r in rows):
        for kind in ("inference fp32", "train fp32", "train bf16-autocast"):
            o, h = by.get((name, f"{kind} ours")), by.get((name, f"{kind} hf"))
            if o and h:
                print(f"# {name} {kind}: ours/hf {o['seq_per_s'] / h['seq_per_s']:.2f}x "
                      f"(best steps {o['best_seq_per_s'] / h['best_seq_per_s']:.2f}x, "
                      f"CPU seconds per step {h['cpu_s'] / o['cpu_s']:.2f}x)", flush=True)
        o, h = by.get((name, "train step memory ours")), by.get((name, "train step memory hf"))
        if o and h:
            print(f"# {name} memory: step peak ours/hf {o['step_peak_mb'] / h['step_peak_mb']:.2f}, "
                  f"process peak ours/hf {o['peak_rss_mb'] / h['peak_rss_mb']:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,base")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--compile-configs", default="small", help="configs to run the torch.compile path on")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    ap.add_argument("--memory-child", nargs=2, metavar=("CONFIG", "IMPL"), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, help="sequences per step (default: per config, 8 base / 32 small)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        args.memory = False  # measured inside run_speed with the CUDA allocator's counters
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else f"{args.threads} threads"
    print(f"# torch {torch.__version__}, {where}, load average {os.getloadavg()[0]:.2f}", flush=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.configs.split(","):
        if args.memory:
            run_memory(name, rows)
        run_speed(name, args.repeats, args.compile and name in args.compile_configs.split(","), args.bf16, rows,
                  args.batch)
    summary(rows)
    print(f"# total {time.perf_counter() - t0:.0f}s, load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
