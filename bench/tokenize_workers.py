"""``tokenize_lines`` / ``encode_batch``: many lines through a ``FullTokenizer`` in batches, on this
process and on worker processes: what ``bench/bench_tokenizer.py`` measures as "ours".

No command runs it (``make-data`` tokenizes each input file in its own worker, line by line with
``FullTokenizer.line_function``), so it lives here beside the benchmark, not in the package;
``tests/bench/test_tokenize_workers.py`` checks its output equals ``tokenize`` line by line.

``tokenize_lines`` reads lines in batches of about ``BATCH_CHARS`` characters, a
bounded number at a time. On one process it tokenizes a batch at a time with the cyclic garbage
collector paused; with ``workers`` it hands batches to worker processes and tokenizes some itself
(``_ParallelRun``, whose docstring says why it is laid out as it is). The output is the same for
any ``workers``, and so is an error: raised after the lines before the line that raises it.
"""

from __future__ import annotations

import array
import gc
import itertools
import multiprocessing
import queue
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from bertdetr.bert.pretraining.make_data import without_cyclic_gc

if TYPE_CHECKING:
    from bertdetr.bert.data.tokenization import FullTokenizer

__all__ = ["tokenize_lines", "encode_batch"]

BATCH_CHARS = 1 << 16
"""Characters a batch of lines is made of (about). With workers, smaller batches let the calling
process top the workers up more often and end closer together with them (2 processes on the Python
docs: 12.9 MB/s with 128K, 13.5 with 64K)."""

PARALLEL_MIN_CHARS = 1 << 19
"""With several workers, a shorter input is tokenized in the calling process."""


def tokenize_lines(tokenizer: FullTokenizer, lines: Iterable, workers: int = 1, to_ids: bool = False,
                   batch_lines: int | None = None) -> Iterator[list]:
    """Yields ``tokenizer.tokenize(line)`` (or ``tokenize_to_ids(line)``) for each line, in order.

    Lines are read in batches of ``batch_lines`` lines (default: as many as make about
    ``BATCH_CHARS`` characters), a bounded number of them at a time, so ``lines`` may be a file
    or any long stream. ``workers`` is the number of processes that tokenize, this one
    included: with 2, one worker process is started and this process tokenizes too. An input shorter
    than ``PARALLEL_MIN_CHARS`` characters is tokenized here alone, as with ``workers=1``:
    starting a worker costs more than it saves on it. The output is the same for any
    ``workers``, and so is an error: raised after the lines before the line that raises it.
    """
    one_line = tokenizer.line_function(to_ids)
    batches = _batches(lines, batch_lines, BATCH_CHARS)
    ahead, chars = [], 0
    # A daemonic process (a DataLoader worker, say) may not start processes of its own.
    if workers > 1 and not multiprocessing.current_process().daemon:
        for batch, size in batches:
            ahead.append(batch)
            chars += size
            if chars >= PARALLEL_MIN_CHARS:
                run = _ParallelRun(tokenizer, one_line, to_ids, workers - 1)
                yield from run.results(itertools.chain(ahead, (batch for batch, _ in batches)))
                return
    # One process: a batch at a time, with the garbage collector paused (~15% faster).
    for batch in itertools.chain(ahead, (batch for batch, _ in batches)):
        yield from _batch_results(one_line, batch)


def encode_batch(tokenizer: FullTokenizer, lines: Iterable, workers: int = 1) -> list[list[int]]:
    """Token ids of each line (``tokenize_to_ids``), on ``workers`` processes."""
    return list(tokenize_lines(tokenizer, lines, workers=workers, to_ids=True))


def _batches(lines: Iterable, batch_lines: int | None, batch_chars: int) -> Iterator[tuple[list, int]]:
    """Lists of lines, each with its number of characters.

    ``batch_lines`` lines each, or, without it, about ``batch_chars`` characters each: the number of
    lines taken next is scaled from the last batch's length (counted in C, as the slicing), at most
    16 times larger from one batch to the next, so that a few short lines first cannot make a huge
    batch of long ones.
    """
    iterator = iter(lines)
    size = batch_lines or 256
    while batch := list(itertools.islice(iterator, max(1, size))):
        try:
            chars = sum(map(len, batch))
        except TypeError:  # not text: it fails where it is tokenized, in order
            chars = batch_chars
        yield batch, chars
        if not batch_lines:
            size = max(1, min(16 * size, size * batch_chars // max(1, chars)))


_BATCHES_IN_FLIGHT = 4
"""Per worker: one to work on and three waiting. The calling process tops the workers up only
between batches of its own: with one waiting, a worker ran dry for ~15% of the run."""


class _ParallelRun:
    """``tokenize_lines`` on this process and ``workers`` worker processes.

    Why it is laid out as it is (measured on 2 cores, 3.6 MB of text that one process tokenizes in
    ~0.33 s, see BENCHMARKS.md):

    - This process tokenizes too, whenever it has no finished batch to pass on, instead of waiting:
      with 2 cores and one worker, that is half of the work. At the end of the input it takes back
      the batches no worker has started, so that it does not wait on a queue of them.
    - A batch travels as one string and its lines' lengths (split in the worker), and comes back as
      one array of 16-bit ids (or one list of tokens, each distinct string pickled once) and where
      each line ends: two messages per batch instead of thousands of small objects to pickle.
      Rebuilding one list per line from them costs this process ~30 ns per id (``_lines_of``),
      about what unpickling such lists would; it is the price of results as Python lists.
    - Results become one list per line only when their turn comes, with the cyclic garbage
      collector paused (``without_cyclic_gc``): tens of thousands of new lists otherwise trigger collections
      that walk every object of the process, again and again (about half of the unpacking).
    - Workers are forked where the platform can: nothing to import or pickle, and they start with
      this tokenizer's caches as they are (elsewhere the tokenizer is pickled, without caches).
    """

    def __init__(self, tokenizer: FullTokenizer, one_line: Callable, to_ids: bool, workers: int):
        self.tokenizer = tokenizer
        self.one_line = one_line
        self.to_ids = to_ids
        self.workers = workers

    def results(self, batches: Iterable[list]) -> Iterator[list]:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        tasks, finished = context.Queue(), context.Queue()
        processes = [
            context.Process(target=_worker_loop, args=(self.tokenizer, self.to_ids, tasks, finished), daemon=True)
            for _ in range(self.workers)
        ]
        try:
            for process in processes:
                process.start()
            yield from self._merge(iter(batches), tasks, finished, processes)
        except BaseException:  # an error, or the caller stopped reading: stop the workers now
            for process in processes:
                if process.pid is not None:  # started
                    process.terminate()
            tasks.cancel_join_thread()  # batches still unsent must not hold up this process's exit
            raise
        else:
            for _ in processes:
                tasks.put(None)
        finally:
            for process in processes:
                if process.pid is not None:
                    process.join()
            tasks.close()
            finished.close()

    def _merge(self, batches: Iterator[list], tasks, finished, processes) -> Iterator[list]:
        """Hands out batches, tokenizes some here, and yields every batch's lines in order."""
        done: dict = {}  # batch number -> its lines' results (a list), packed results, or None
        kept: dict = {}  # batch number -> its lines, until yielded: redone here if they failed
        head = 0  # the next batch to yield
        read = 0  # batches read so far
        sent = 0  # batches with the workers, not back yet
        in_flight = _BATCHES_IN_FLIGHT * len(processes)
        while True:
            while sent and not finished.empty():  # take what is back, without waiting
                number, packed = finished.get()
                done[number] = packed
                sent -= 1
            while head in done:
                result, batch = done.pop(head), kept.pop(head)
                # A batch that failed, here or in a worker: line by line, to raise at its line.
                yield from map(self.one_line, batch) if result is None else _lines_of(result)
                head += 1
            while sent < in_flight and (batch := next(batches, None)) is not None:
                kept[read] = batch
                if (joined := _join_lines(batch)) is None:  # not all str or all bytes: here
                    done[read] = _tokenize_batch(self.one_line, batch)
                else:
                    tasks.put((read, *joined))
                    sent += 1
                read += 1
            # Work here meanwhile: a new batch, unless as many as the workers hold are already
            # waiting for an earlier one (memory stays bounded when a worker is slow), else one
            # that no worker has started.
            if read - head <= 2 * in_flight and (batch := next(batches, None)) is not None:
                done[read] = _tokenize_batch(self.one_line, batch)
                kept[read] = batch
                read += 1
            elif sent and (task := _take_nowait(tasks)) is not None:
                number = task[0]
                done[number] = _tokenize_batch(self.one_line, kept[number])
                sent -= 1
            elif sent:
                number, packed = _wait_for(finished, processes)
                done[number] = packed
                sent -= 1
            elif head == read:
                return


def _tokenize_batch(one_line: Callable, batch: list) -> list | None:
    """``one_line`` of each line, with the collector paused; None if a line raises."""
    with without_cyclic_gc():
        try:
            return list(map(one_line, batch))
        except Exception:
            return None


def _batch_results(one_line: Callable, batch: list) -> Iterator[list]:
    """Yields ``one_line`` of each line, from a batch computed at once; where a line raises, line
    by line again (cached: cheap), so that the lines before it are yielded first, as without batches."""
    results = _tokenize_batch(one_line, batch)
    yield from map(one_line, batch) if results is None else results


def _join_lines(batch: list) -> tuple | None:
    """The batch as one str (or bytes) and its lines' lengths; None unless all str or all bytes."""
    try:
        return "".join(batch), array.array("q", map(len, batch))
    except TypeError:
        pass
    if set(map(type, batch)) == {bytes}:  # bytes lines are decoded one by one, in the worker
        return b"".join(batch), array.array("q", map(len, batch))
    return None


def _split_lines(text, lengths) -> list:
    ends = list(itertools.accumulate(lengths))
    return [text[start:end] for start, end in zip([0] + ends, ends)]


def _take_nowait(tasks):
    try:
        return tasks.get_nowait()
    except queue.Empty:
        return None


def _wait_for(finished, processes) -> tuple:
    """The next finished batch; raises if a worker has died (it would never come)."""
    while True:
        try:
            return finished.get(timeout=1.0)
        except queue.Empty:
            for process in processes:
                if process.exitcode is not None:
                    raise RuntimeError(f"a tokenizer worker process ended with exit code {process.exitcode}")


def _worker_loop(tokenizer: FullTokenizer, to_ids: bool, tasks, finished) -> None:
    """A worker process: tokenizes batches from ``tasks`` until None, packs them into ``finished``."""
    # Nothing this process builds holds a cycle, and it ends with the call: collections would only
    # walk its objects (~10% of its time).
    gc.disable()
    one_line = tokenizer.line_function(to_ids)
    # Ids as 16-bit numbers where the vocabulary allows (BERT's has 30522 entries): half the bytes
    # to pickle and send.
    id_type = ("H" if max(tokenizer.vocab.values(), default=0) < 1 << 16 else "i") if to_ids else None
    while (task := tasks.get()) is not None:
        number, text, lengths = task
        results = _tokenize_batch(one_line, _split_lines(text, lengths))
        # A batch that fails goes back as None: the calling process redoes it, to raise in order.
        finished.put((number, None if results is None else _pack(results, id_type)))


def _pack(results: Iterable[list], id_type: str | None) -> tuple:
    """All the lines' tokens (or ids, an ``id_type`` array) in one sequence, and where each line ends."""
    flat: list = []
    ends = array.array("q")
    for result in results:
        flat += result
        ends.append(len(flat))
    return (array.array(id_type, flat) if id_type else flat), ends


def _lines_of(result) -> list[list]:
    """A batch's results, one list per line: ``_tokenize_batch``'s or ``_pack``'s."""
    if isinstance(result, list):
        return result
    flat, ends = result
    with without_cyclic_gc():
        if not isinstance(flat, list):
            flat = flat.tolist()  # all the batch's ids at once: much faster than line by line
        ends = ends.tolist()
        return [flat[start:end] for start, end in zip([0] + ends, ends)]
