"""``bertdetr bert make-data`` side by side with Google's ``create_pretraining_data.py``.

Both run as separate processes on the same text with the same flags (Google's benchmark point:
dupe_factor 5, max_seq_length 128, the bert-base-uncased vocab), one after the other; we report
wall seconds, CPU seconds (user + system; steadier than wall time on a shared machine) and peak
RSS of each, the ratios, and check that the decoded records are equal, record for record.

Google's script comes from the ``bert-tensorflow`` PyPI package (Google's scripts, TF2-ported
with ``tensorflow.compat.v1``; ``pip install -e ".[tf,bench]"``) in this Python, or in the Python
given with ``--google-python``, e.g. a separate environment::

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu bert-tensorflow==1.0.4
    python bench/bench_make_data.py --google-python /tmp/tfenv/bin/python

It is required: the benchmark compares with Google's own script, run by that interpreter.
With ``--baseline-src OTHER/src`` another checkout's make-data (say main's, to show a change
costs nothing) runs too, alternating with ours, and must write the same bytes.

Text: real English prose from CPython's documentation sources as Debian's ``python3.11-doc``
package installs them (``/usr/share/doc/python3.11/html/_sources``; ``apt-get install
python3.11-doc``), one sentence a line, one document per page, or any file given with
``--text``. The first ``--mb`` megabytes are used.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC_SOURCES = "/usr/share/doc/python3.11/html/_sources"
VOCAB = os.path.join(ROOT, "tests", "data", "bert", "vocab-uncased.txt")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_MARKUP = re.compile(r":[a-z:]+:`([^`<]*)(?:<[^>]*>)?`|``([^`]*)``|\*\*?([^*]+)\*\*?|`([^`]*)`_*")


def _prose(page: str) -> list[str]:
    """Sentences of a reStructuredText page: paragraphs only (no code, directives, tables)."""
    sentences = []
    paragraph: list[str] = []
    in_literal = False

    def flush():
        if paragraph:
            text = " ".join(paragraph)
            text = _MARKUP.sub(lambda m: next(g for g in m.groups() if g is not None), text)
            sentences.extend(s.strip() for s in _SENTENCE_END.split(text) if len(s.split()) >= 3)
            paragraph.clear()

    for line in page.splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        indented = line[:1].isspace()
        if in_literal:
            if indented:
                continue
            in_literal = False
        if stripped.startswith(("..", "+", "|", "=", ">>>", "*" * 3)) or set(stripped) <= set("=-~^*#+`'\""):
            flush()
            in_literal = stripped.startswith("..")
            continue
        if indented and not paragraph:
            continue
        paragraph.append(stripped)
        if stripped.endswith("::"):
            flush()
            in_literal = True
    flush()
    return sentences


def build_corpus(path: str, megabytes: float) -> str:
    pages = sorted(glob.glob(os.path.join(DOC_SOURCES, "**", "*.rst.txt"), recursive=True))
    if not pages:
        sys.exit(f"no text: {DOC_SOURCES} is missing (apt-get install python3.11-doc) and no --text given")
    limit = int(megabytes * 1e6)
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        while size < limit:  # the docs are ~6 MB of prose; repeat pages if asked for more
            for page in pages:
                with open(page, encoding="utf-8", errors="ignore") as f:
                    sentences = _prose(f.read())
                if len(sentences) < 2:
                    continue
                text = "\n".join(sentences) + "\n\n"
                out.write(text)
                size += len(text.encode("utf-8"))
                if size >= limit:
                    break
    return path


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Runs ``cmd``; returns (wall seconds, CPU seconds (user + system), peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _has_google_script() -> bool:
    import importlib.util

    try:
        return bool(importlib.util.find_spec("tensorflow")
                    and importlib.util.find_spec("bert.create_pretraining_data"))
    except ImportError:
        return False


def decoded(path: str) -> list[dict]:
    from bertdetr.bert.data.records import iter_examples

    return [{k: v.tolist() for k, v in r.items()} for r in iter_examples(path)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", help="input text (default: built from the CPython docs)")
    p.add_argument("--mb", type=float, default=2.6, help="megabytes of text to build (default 2.6)")
    p.add_argument("--google-python", default=os.environ.get("GOOGLE_PYTHON"),
                   help="a Python with tensorflow and bert-tensorflow, to run Google's script")
    p.add_argument("--dupe-factor", type=int, default=5)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--repeat", type=int, default=1, help="runs of ours; the best is reported")
    p.add_argument("--baseline-src", help="another checkout's src/ (e.g. main's, with its _speedups built): "
                   "its make-data runs too, alternating with ours, and must write the same bytes")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (text and outputs)")
    args = p.parse_args()
    if not args.google_python and _has_google_script():
        args.google_python = sys.executable
    if not args.google_python:
        p.error("needs Google's script: --google-python PYTHON with tensorflow-cpu and bert-tensorflow installed")

    work = tempfile.mkdtemp(prefix="bench-make-data-")
    text = args.text or build_corpus(os.path.join(work, "corpus.txt"), args.mb)
    mb = os.path.getsize(text) / 1e6
    flags = [f"--input_file={text}", f"--vocab_file={VOCAB}", "--do_lower_case=True",
             f"--max_seq_length={args.max_seq_length}", "--max_predictions_per_seq=20",
             "--masked_lm_prob=0.15", "--random_seed=12345", f"--dupe_factor={args.dupe_factor}"]

    ours_out = os.path.join(work, "ours.tfrecord")
    ours_cmd = [sys.executable, "-m", "bertdetr.cli", "bert", "make-data", *flags,
                f"--output_file={ours_out}"]  # with its progress bar, as a user runs it
    base_out = os.path.join(work, "baseline.tfrecord")
    base_env = dict(os.environ, PYTHONPATH=os.path.abspath(args.baseline_src or ""))
    base_cmd = [arg.replace(ours_out, base_out) for arg in ours_cmd]
    runs, base_runs = [], []
    for k in range(args.repeat):  # alternating, each first every other time: same machine load
        if args.baseline_src and k % 2:
            base_runs.append(timed(base_cmd, base_env))
        runs.append(timed(ours_cmd))
        if args.baseline_src and not k % 2:
            base_runs.append(timed(base_cmd, base_env))
    ours_s, ours_cpu, ours_mb = (min(r[i] for r in runs) for i in range(3))

    google_out = os.path.join(work, "google.tfrecord")
    label = "Google's create_pretraining_data.py (bert-tensorflow 1.0.4, TensorFlow)"
    g_cmd = [args.google_python, "-m", "bert.create_pretraining_data", *flags,
             f"--output_file={google_out}"]
    g_s, g_cpu, g_mb = timed(g_cmd)

    ours_records = decoded(ours_out)
    equal = ours_records == decoded(google_out)
    result = {
        "text": args.text or f"CPython docs prose ({DOC_SOURCES})", "text_mb": round(mb, 2),
        "dupe_factor": args.dupe_factor,
        "max_seq_length": args.max_seq_length, "instances": len(ours_records),
        "reference": label,
        "reference_s": round(g_s, 2), "reference_cpu_s": round(g_cpu, 2),
        "reference_peak_rss_mb": round(g_mb),
        "ours_s": round(ours_s, 2), "ours_cpu_s": round(ours_cpu, 2), "ours_peak_rss_mb": round(ours_mb),
        "speedup_wall": round(g_s / ours_s, 1), "speedup_cpu": round(g_cpu / ours_cpu, 1),
        "memory_ratio": round(g_mb / ours_mb, 1),
        "records_equal": equal,
    }
    if args.baseline_src:
        base_s, base_cpu, base_mb = (min(r[i] for r in base_runs) for i in range(3))
        with open(ours_out, "rb") as a, open(base_out, "rb") as b:
            same_bytes = a.read() == b.read()
        result.update({
            "baseline_src": args.baseline_src, "baseline_s": round(base_s, 2),
            "baseline_cpu_s": round(base_cpu, 2), "baseline_peak_rss_mb": round(base_mb),
            "ours_over_baseline_wall": round(ours_s / base_s, 3),
            "ours_over_baseline_cpu": round(ours_cpu / base_cpu, 3),
            "baseline_bytes_equal": same_bytes,
        })
        equal = equal and same_bytes
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    if not equal:
        sys.exit("records differ")


if __name__ == "__main__":
    main()
