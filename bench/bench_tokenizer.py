"""FullTokenizer speed, side by side with Google's plain algorithm and the Rust ``tokenizers``.

    python bench/bench_tokenizer.py [--input FILE] [--vocab vocab.txt] [--cased] [--repeat 3]

On the same lines of real English text, each run times:

  google    Google's plain algorithm (``bench/reference_tokenization.py``), ``tokenize`` per line
  rust      Hugging Face ``tokenizers`` ``BertWordPieceTokenizer.encode_batch``, one thread
            (``RAYON_NUM_THREADS=1``), with Google's 200-character word limit
  ours      ``tokenize_lines`` of a ``FullTokenizer`` (tokens, as ``tokenize`` line by line; see
            ``bench/tokenize_workers.py``), one core, then with ``--workers`` processes (this one included)
  ours ids  ``encode_batch`` (ids), likewise

Besides the wall time, each run's CPU time is recorded: this process's, and its worker processes'
(which ended within the run), to show where the time of the runs with workers goes. Workers can
only be faster on idle cores: Linux's autogroup scheduling (on by default) shares the CPU between
sessions, not processes, so while another session keeps the cores busy this one gets the same
share with one process or two, and the runs with workers then measure their overhead.

Every tokenizer of ours starts with empty caches (a new ``FullTokenizer`` each time), so the word
cache helps only as much as the text repeats itself. (The character classes for non-ASCII text are
built once per process, ~0.1 s, before the runs.) Each run starts after a ``gc.collect()``, and the
results are kept as one string a line, so that no run pays for the garbage of another. Our output must equal Google's token for token
(else the run fails); lines where Rust differs from Google are counted and reported.

The default text is the English prose of the Python documentation that Debian ships
(``apt-get install python3.11-doc``: the reStructuredText sources of the tutorial, HOWTOs, FAQs,
language reference, "What's New" and the using/extending guides, ~3.6 MB). No download is possible
on the benchmark machine; any other UTF-8 text file can be given with ``--input``, e.g. the Jargon
File (``apt-get install jargon-text``; ``--input /usr/share/doc/jargon-text/jargon.txt.gz``, 1.7 MB
of English prose with more non-ASCII text: 14% of its lines against 0.3% in the Python docs).
"""

from __future__ import annotations

import os

# One thread for Rust: must be set before tokenizers is imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import gc  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference_tokenization  # noqa: E402
from tokenize_workers import encode_batch, tokenize_lines  # noqa: E402

from bertdetr.bert.data import tokenization  # noqa: E402

DEFAULT_VOCAB = HERE.parent / "tests" / "data" / "bert" / "vocab-uncased.txt"
DOC_PARTS = ("tutorial", "howto", "faq", "reference", "whatsnew", "using", "extending")


def default_corpus() -> list[str]:
    roots = sorted(glob.glob("/usr/share/doc/python3*/html/_sources"))
    if not roots:
        sys.exit(
            "bench_tokenizer: no default text: install the Python docs (apt-get install "
            "python3.11-doc) or pass --input FILE"
        )
    root = roots[-1]
    files = [f for part in DOC_PARTS for f in sorted(glob.glob(f"{root}/{part}/*.rst.txt"))]
    return files + sorted(glob.glob(f"{root}/glossary.rst.txt"))


def read_bytes(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path) as f:
            return f.read()
    return pathlib.Path(path).read_bytes()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(fn):
    """Wall seconds, CPU seconds of this process and of its ended children, and fn's result."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = max(0.0, after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
    return wall, cpu, workers_cpu, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--input", action="append", help="UTF-8 text file, may be .gz (repeatable); default: Python docs"
    )
    parser.add_argument("--vocab", default=str(DEFAULT_VOCAB))
    parser.add_argument("--cased", action="store_true", help="do_lower_case=False")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--workers", type=int, default=2, help="processes for the runs with workers, this one included")
    parser.add_argument("--max-mb", type=float, default=5.0, help="use at most this much text")
    args = parser.parse_args(argv)
    lower = not args.cased

    files = args.input or default_corpus()
    data = b"".join(read_bytes(f) for f in files)[: int(args.max_mb * 1e6)]
    lines = data.decode("utf-8", "ignore").split("\n")
    megabytes = len(data) / 1e6

    from tokenizers import BertWordPieceTokenizer, __version__ as tokenizers_version
    from tokenizers.models import WordPiece

    vocab = tokenization.load_vocab(args.vocab)
    google = reference_tokenization.FullTokenizer(args.vocab, do_lower_case=lower)
    rust = BertWordPieceTokenizer(args.vocab, lowercase=lower, strip_accents=lower)
    # Google's word limit is 200 characters, HF's default 100.
    rust._tokenizer.model = WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=200)
    # The regexes a tokenizer switches to after its first non-ASCII chunks: built once per
    # process (~0.1 s), not per tokenizer.
    tokenization._unicode_classes()

    def fresh():
        return tokenization.FullTokenizer._from_vocab(vocab, lower)

    runs = {
        "google": lambda: [google.tokenize(line) for line in lines],
        "rust": lambda: [e.ids for e in rust.encode_batch(lines, add_special_tokens=False)],
        "ours": lambda: list(tokenize_lines(fresh(), lines)),
        f"ours, {args.workers} workers": lambda: list(tokenize_lines(fresh(), lines, workers=args.workers)),
        "ours ids": lambda: encode_batch(fresh(), lines),
        f"ours ids, {args.workers} workers": lambda: encode_batch(fresh(), lines, workers=args.workers),
    }
    print(f"text: {megabytes:.2f} MB, {len(lines)} lines, from {len(files)} file(s) "
          f"({files[0]}{' ...' if len(files) > 1 else ''})")
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"tokenizers {tokenizers_version}; do_lower_case={lower}; median of {args.repeat} runs")

    if hasattr(os, "getloadavg"):
        print("load average before the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu_seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    expected: dict[str, list[str]] = {}
    rust_mismatches = 0
    for _ in range(args.repeat):
        for name, run in runs.items():  # interleaved, so that load from elsewhere hits all alike
            gc.collect()
            elapsed, cpu, workers_cpu, result = timed(run)
            seconds[name].append(elapsed)
            cpu_seconds[name].append((cpu, workers_cpu))
            # Kept as one string a line: thousands of live lists would slow the next runs' GC.
            got = [" ".join(map(str, r)) for r in result]
            del result
            if name == "google":
                expected["tokens"] = got
                expected["ids"] = [" ".join(map(str, google.convert_tokens_to_ids(t.split()))) for t in got]
            elif name == "rust":
                rust_mismatches = sum(a != b for a, b in zip(got, expected["ids"]))
            elif got != expected["ids" if "ids" in name else "tokens"]:
                want = expected["ids" if "ids" in name else "tokens"]
                bad = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
                sys.exit(f"bench_tokenizer: {name} differs from Google on line {bad}: {lines[bad]!r}")
            del got

    speed = {name: megabytes / statistics.median(times) for name, times in seconds.items()}
    print(f"\n{'':26} {'MB/s':>7} {'x google':>9} {'x rust':>7}   runs (s)         CPU s: this + workers (median)")
    for name, mbps in speed.items():
        runs_s = " ".join(f"{t:.2f}" for t in seconds[name])
        cpu = statistics.median(c for c, _ in cpu_seconds[name])
        workers_cpu = statistics.median(w for _, w in cpu_seconds[name])
        print(f"{name:26} {mbps:7.2f} {mbps / speed['google']:9.2f} {mbps / speed['rust']:7.2f}   {runs_s:16} "
              f"{cpu:.2f} + {workers_cpu:.2f}")
    print(f"\nours == google on every line; rust differs from google on {rust_mismatches} of {len(lines)} lines")
    if hasattr(os, "getloadavg"):
        print("load average after the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
