"""``bertdetr bert make-data``: Google's ``create_pretraining_data.py`` run on each input shard.

The algorithm is ``bertdetr.bert.pretraining.create_pretraining_data`` (Google's functions by name); this module is
the command around it: checking everything before any work, planning the output files, and
running the shards, ``workers`` at a time, with a progress bar.

**Shards.** Each input file is a shard processed on its own (Google's algorithm within the shard,
as Google's README recommends sharding the input): ``process_shard`` is Google's ``main`` on
that one file. Shard ``i`` of the sorted input list uses ``random.Random(random_seed + i)``, so a
single input file uses ``random_seed`` itself and equals Google's run, and shard ``i`` equals
Google's run on that file alone with ``--random_seed=random_seed+i``. (Google's run over several
files is one pool: documents of all files shuffled together, and a file not ending in a blank
line runs its last document on into the next file. We do not reproduce that; it is what keeps
Google's memory unbounded.) Memory is bounded by one shard: its documents as id lists and its
records as bytes (Google holds every document and every instance object of every input at once).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import queue as queue_mod
import random
import signal
import string
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from bertdetr.bert.pretraining.create_pretraining_data import (
    PretrainingDataConfig,
    ProgressFn,
    VocabIds,
    create_training_instances,
    read_documents,
    write_instance_to_example_files,
)
from bertdetr.bert.pretraining.chinese_ref import make_marks, mostly_cjk
from bertdetr.bert.pretraining.roberta import DynamicRecordEncoder
from bertdetr.bert.pretraining.features import ExampleEncoder
from bertdetr.errors import BertDetrError, Preempted
from bertdetr.fileio import check_not_an_input, check_writable, expand_inputs
from bertdetr.training.stop_signals import stop_signals_handled

__all__ = ["MakeDataSummary", "shard_seed", "plan_outputs", "process_shard", "make_pretraining_data"]


def shard_seed(random_seed: int, index: int) -> int:
    """Seed of input shard ``index`` (its position in the sorted input list): ``random_seed + index``.

    Shard 0 — in particular the only shard of a one-file run — uses ``random_seed`` itself, so it
    equals Google's run; shard ``i`` equals Google's run on that file with
    ``--random_seed=random_seed+i``. (Python seeds MT19937 through ``init_by_array``, so
    neighbouring integer seeds give unrelated streams.)
    """
    return random_seed + index


@dataclass
class MakeDataSummary:
    """Counts of a ``make_pretraining_data`` run."""

    documents: int = 0
    """Non-empty documents read."""
    tokens: int = 0
    """Word pieces read (before dupe_factor)."""
    instances: int = 0
    """Records written."""
    outputs: list = field(default_factory=list)
    """Files written."""
    inputs: list = field(default_factory=list)
    """Input files processed (this shard selection)."""


def _fill(template: str, index: int, path: str, num_inputs: int) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    try:
        return template.format(index=index, name=stem, num_inputs=num_inputs)
    except (KeyError, IndexError, ValueError) as e:
        raise BertDetrError(
            f"bad output template {template!r} ({e!s}); use {{index}}, {{name}} and {{num_inputs}}, "
            "e.g. out/{index:05d}.tfrecord"
        ) from None


def _has_fields(spec: str) -> bool:
    try:
        return any(name is not None for _, name, _, _ in string.Formatter().parse(spec))
    except ValueError:
        return True  # a malformed template: _fill reports it


def plan_outputs(inputs: Sequence[str], output_file: str) -> list[list[str]]:
    """The output files of each input, from ``--output-file``.

    ``output_file`` is a comma-separated list of specs; each shard writes its instances
    round-robin over its own files, one per spec (Google's behaviour for a single input). A spec
    is a file name (only with one input, as Google's), a template with ``{index}`` (the input's
    position in the sorted input list; format specs allowed, ``{index:05d}``), ``{name}`` (the
    input's file name without extension) and ``{num_inputs}``, or a directory (an existing one, or
    a name ending in ``/``), meaning ``DIR/{index:05d}-{name}.tfrecord``.
    """
    specs = [s.strip() for s in output_file.split(",") if s.strip()]
    if not specs:
        raise BertDetrError("no output file given")
    expanded = []
    for spec in specs:
        if spec.endswith(("/", os.sep)) or os.path.isdir(spec):
            spec = os.path.join(spec, "{index:05d}-{name}.tfrecord")
        elif len(inputs) > 1 and not _has_fields(spec):
            raise BertDetrError(
                f"{len(inputs)} input files need an output template with {{index}} or {{name}}, or a "
                f"directory, not the single file {spec!r} (each input shard writes its own files; "
                "e.g. --output-file out/{index:05d}.tfrecord)"
            )
        expanded.append(spec)
    plan = [[_fill(spec, i, path, len(inputs)) for spec in expanded] for i, path in enumerate(inputs)]
    seen: dict[str, int] = {}
    for i, outs in enumerate(plan):
        for out in outs:
            key = os.path.abspath(out)
            if key in seen:
                raise BertDetrError(
                    f"output {out} is planned twice (inputs {seen[key]} and {i}); "
                    "use {index} in --output-file"
                )
            seen[key] = i
    return plan


def _check_has_text(path: str) -> bool:
    """True if ``path`` has a non-whitespace byte (scans only up to the first one)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return False
            if chunk.strip():
                return True


_TOKENIZERS: dict = {}


def _tokenizer(vocab_file: str, do_lower_case: bool):
    """The process's tokenizer for this vocab (loaded once per process; reloaded if the file
    changed)."""
    from bertdetr.bert.data.tokenization import FullTokenizer

    try:
        stat = os.stat(vocab_file)
        key = (os.path.abspath(vocab_file), stat.st_mtime_ns, stat.st_size, do_lower_case)
    except OSError:
        key = None  # FullTokenizer reports the missing file
    if key is None or key not in _TOKENIZERS:
        tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = tokenizer
    return _TOKENIZERS[key]


@dataclass
class _ShardTask:
    index: int
    path: str
    outputs: list
    seed: int
    vocab_file: str
    config: PretrainingDataConfig
    ref_file: Optional[str] = None


@contextlib.contextmanager
def without_cyclic_gc():
    """Turns Python's cyclic garbage collector off (for a shard), then back on if it was on.

    A shard allocates millions of short-lived lists and holds tens of thousands of long-lived
    ones (its documents); the collector's passes over them cost ~8% of the run and find nothing:
    the algorithm makes no reference cycles, so reference counting frees everything anyway.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def process_shard(task: _ShardTask, progress: Optional[ProgressFn] = None) -> MakeDataSummary:
    """Google's whole script (its ``main``) on one input file: read, create the instances, write
    them; with the cyclic garbage collector off."""
    with without_cyclic_gc():
        config = task.config
        tokenizer = _tokenizer(task.vocab_file, config.do_lower_case)
        vocab = VocabIds(tokenizer.vocab)
        marks = make_marks(config.word_segmenter, task.ref_file, task.path, tokenizer.inv_vocab)
        documents, num_tokens = read_documents(task.path, tokenizer, progress, marks, vocab.shadow)
        if marks is not None:
            marks.finish()
        if not documents:
            raise BertDetrError(f"{task.path}: no text to make pretraining data from "
                                "(every line is blank or tokenizes to nothing)")
        num_documents = len(documents)
        if config.dynamic_masking:
            encoder = DynamicRecordEncoder(config.max_seq_length, config.next_sentence, config.do_whole_word_mask)
        else:
            encoder = ExampleEncoder(config.max_seq_length, config.max_predictions_per_seq, vocab.size,
                                     config.next_sentence)
        # Kept as their records (bytes), serialized a batch at a time: see create_training_instances.
        records = create_training_instances(documents, config, vocab, random.Random(task.seed),
                                            serialize=encoder.records, progress=progress)
        del documents
        write_instance_to_example_files(records, task.outputs)
    return MakeDataSummary(documents=num_documents, tokens=num_tokens, instances=len(records),
                           outputs=list(task.outputs), inputs=[task.path])


def make_pretraining_data(
    input_patterns: Iterable[str],
    output_file: str,
    vocab_file: str | os.PathLike,
    config: PretrainingDataConfig,
    workers: int = 1,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = False,
    ref_file: Optional[str] = None,
) -> MakeDataSummary:
    """``bertdetr bert make-data``: every check first, then the shards (``workers`` at a time).

    Inputs are expanded (comma-separated paths and globs, sorted within a glob); the shard
    selection keeps input ``i`` when ``i % num_shards == shard_index`` (so a cluster scheduler can
    split a job over ``num_shards`` tasks); seeds and output names use ``i`` itself, so the
    selection never changes what a shard writes.

    ``ref_file`` (Chinese whole-word masking from ``run_chinese_ref.py`` output): a file for a
    single input, or a template as ``--output-file``'s (``{name}``, ``{index}``) naming each
    input's ref file.
    """
    if workers < 1:
        raise BertDetrError(f"workers must be >= 1, got {workers}")
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise BertDetrError(f"shard index {shard_index} is not in [0, num_shards={num_shards})")
    inputs = expand_inputs(input_patterns)
    plan = plan_outputs(inputs, output_file)
    vocab_file = os.fspath(vocab_file)
    tokenizer = _tokenizer(vocab_file, config.do_lower_case)  # a bad vocab fails here, before work
    VocabIds(tokenizer.vocab)
    refs = _plan_ref_files(inputs, ref_file, config)
    tasks = [_ShardTask(i, path, plan[i], shard_seed(config.random_seed, i), vocab_file, config, refs[i])
             for i, path in enumerate(inputs) if i % num_shards == shard_index]
    empty = [t.path for t in tasks if not _check_has_text(t.path)]
    if empty:
        raise BertDetrError(f"input has no text (empty, or only blank lines): {', '.join(empty)}")
    if tasks and config.do_whole_word_mask and ref_file is None and config.word_segmenter is None \
            and mostly_cjk(tasks[0].path):
        warnings.warn(
            f"{tasks[0].path} is mostly Chinese: without a word segmenter, whole-word masking masks "
            "single characters (each is a token of its own); add --word-segmenter jieba or --ref-file",
            stacklevel=2)
    read = [*inputs, vocab_file, *(r for r in refs if r is not None)]
    for t in tasks:
        for out in t.outputs:
            check_not_an_input(out, read)
            check_writable(out)

    summary = MakeDataSummary()
    if not tasks:
        return summary
    bar = None
    if progress:
        from tqdm import tqdm

        total = sum(os.path.getsize(t.path) for t in tasks)
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="make-data", file=sys.stderr,
                   dynamic_ncols=True)
    counts = [0, 0]

    def report(nbytes: int, ndocs: int, ninst: int) -> None:
        if bar is None:
            return
        counts[0] += ndocs
        counts[1] += ninst
        if nbytes:
            bar.update(nbytes)
        if ndocs or ninst:
            bar.set_postfix(documents=counts[0], instances=counts[1], refresh=False)

    try:
        if workers == 1 or len(tasks) == 1:
            results = [process_shard(t, report) for t in tasks]
        else:
            results = _run_parallel(tasks, min(workers, len(tasks)), report)
    finally:
        if bar is not None:
            bar.close()
    for r in results:  # in input order
        summary.documents += r.documents
        summary.tokens += r.tokens
        summary.instances += r.instances
        summary.outputs.extend(r.outputs)
        summary.inputs.extend(r.inputs)
    return summary


def _plan_ref_files(inputs: Sequence[str], ref_file: Optional[str],
                    config: PretrainingDataConfig) -> list[Optional[str]]:
    """Each input's ``run_chinese_ref.py`` file (all None without ``ref_file``), each checked to
    exist; a plain file name only for a single input."""
    if ref_file is None:
        return [None] * len(inputs)
    if not config.do_whole_word_mask:
        raise BertDetrError("--ref-file marks whole words for whole-word masking: add --do-whole-word-mask")
    if config.word_segmenter is not None:
        raise BertDetrError("give either --word-segmenter or --ref-file, not both")
    if len(inputs) > 1 and not _has_fields(ref_file):
        raise BertDetrError(
            f"{len(inputs)} input files need a --ref-file template with {{name}} or {{index}} "
            f"(each input has its own ref file), not the single file {ref_file!r}")
    refs = [_fill(ref_file, i, path, len(inputs)) for i, path in enumerate(inputs)]
    missing = [r for r in refs if not os.path.isfile(r)]
    if missing:
        raise BertDetrError(f"ref file not found: {', '.join(missing)}")
    return refs


_QUEUE = None


_PARENT: int | None = None


def _init_worker(q, parent: int) -> None:
    global _QUEUE, _PARENT
    _QUEUE, _PARENT = q, parent
    # a stop is the parent's to act on (it ends the pool): Ctrl-C reaches the whole process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker(task: _ShardTask) -> MakeDataSummary:
    q = _QUEUE
    pending = [0, 0, 0]
    last = [time.monotonic()]

    def report(nbytes, ndocs, ninst):
        pending[0] += nbytes
        pending[1] += ndocs
        pending[2] += ninst
        if time.monotonic() - last[0] > 0.2:
            if os.getppid() != _PARENT:  # the command was killed (kill -9): no one waits for this file
                os._exit(1)
            q.put(tuple(pending))
            pending[:] = [0, 0, 0]
            last[0] = time.monotonic()

    result = process_shard(task, report if q is not None else None)
    if q is not None:
        q.put(tuple(pending))
    return result


@contextlib.contextmanager
def _stopped_by_signals() -> Iterable[None]:
    """SIGTERM (a scheduler's stop) and SIGINT raise ``Preempted`` in the parent, so that leaving the
    pool's ``with`` ends its workers rather than leaving them writing after the command is gone."""
    def stop(signum, _frame):
        raise Preempted(f"stopped by {signal.Signals(signum).name}: the output files finished so far are whole "
                        "(each renamed into place once complete), the others not written; the same command "
                        "makes them", signum)

    with stop_signals_handled(stop):
        yield


def _run_parallel(tasks: list, workers: int, report: ProgressFn) -> list[MakeDataSummary]:
    # spawn, not fork: the parent may hold threads (tqdm's monitor) and large objects.
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    with _stopped_by_signals(), ctx.Pool(workers, initializer=_init_worker, initargs=(q, os.getpid())) as pool:
        pending = [(k, pool.apply_async(_worker, (t,))) for k, t in enumerate(tasks)]
        results: list = [None] * len(tasks)
        while pending:
            try:
                report(*q.get(timeout=0.1))
            except queue_mod.Empty:
                pass
            still = []
            for k, p in pending:
                if p.ready():
                    results[k] = p.get()  # re-raises a shard's error here
                else:
                    still.append((k, p))
            pending = still
        while True:
            try:
                report(*q.get_nowait())
            except queue_mod.Empty:
                break
    return results
