"""The ``bertdetr`` command: ``bertdetr bert ...``, ``bertdetr detr ...`` and ``bertdetr demo``.

Command-line options are turned into typed configs and plain arguments here (and in each
system's ``cli`` module) only; library functions never read flags.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings

from bertdetr import __version__
from bertdetr.errors import BertDetrError, Preempted


def build_parser() -> argparse.ArgumentParser:
    from bertdetr.bert import cli as bert_cli
    from bertdetr.detr import cli as detr_cli
    from bertdetr import demo
    from bertdetr.options import use_defaults_formatter

    parser = argparse.ArgumentParser(
        prog="bertdetr",
        description="BERT pretraining (Google's release) and DETR detection (MMDetection), in PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"bertdetr {__version__}")
    systems = parser.add_subparsers(dest="system", metavar="{bert,detr,demo}", required=True)
    bert = systems.add_parser("bert", help="BERT: vocab, pretraining data, model")
    bert_cli.add_subcommands(bert.add_subparsers(dest="command", metavar="COMMAND", required=True))
    detr = systems.add_parser("detr", help="DETR: configs, checkpoint conversion, model")
    detr_cli.add_subcommands(detr.add_subparsers(dest="command", metavar="COMMAND", required=True))
    demo.add_parser(systems)
    use_defaults_formatter(parser)
    return parser


def _format_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning) -> str:
    """Our own warnings as ``bertdetr: warning: ...`` (not Python's file:line form); others as usual."""
    if issubclass(category, UserWarning) and os.path.abspath(filename).startswith(_PACKAGE_DIR):
        return f"bertdetr: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return _run(args)
    finally:
        warnings.formatwarning = formatwarning


def _run(args) -> int:
    from bertdetr.fileio import remove_created_empty_folders

    status = _run_command(args)
    if status != 0:
        remove_created_empty_folders()  # a failed command leaves no empty output folder behind
    return status


def _run_command(args) -> int:
    try:
        status = int(args.func(args) or 0)
        _end_process_group()  # after a success only: a failed rank leaves at once, for torchrun to see
        return status
    except Preempted as e:  # a trainer saved its checkpoint after SIGTERM/SIGINT
        if str(e):  # (said by the main process only, under torchrun)
            print(f"bertdetr: {e}", file=sys.stderr)
        return e.exit_code
    except BertDetrError as e:
        print(f"bertdetr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bertdetr: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a write that ran out of space outside ``atomic_output`` (which names its file)
        from bertdetr.fileio import disk_full_error, is_disk_full

        if not is_disk_full(e):
            raise
        print(f"bertdetr: error: {disk_full_error(None, e)}", file=sys.stderr)
        return 2


def _end_process_group() -> None:
    """Leaves torchrun's process group, if a trainer joined one, before the interpreter ends: left to
    the interpreter's shutdown, gloo's threads can abort the process ("terminate called without an
    active exception", seen on a rank after a successful run)."""
    dist = sys.modules.get("torch.distributed")  # never imported here just for this: torch is slow to load
    if dist is not None and dist.is_available() and dist.is_initialized():
        # DistributedDataParallel sits in a reference cycle (checked: a deleted one lives until the
        # collector runs), and its reducer holds the process group: collected now, the group is
        # freed by destroy_process_group below, not left to the interpreter's exit, where gloo's
        # threads abort (seen once more, on a rank of a fine-tuning run, after the barrier came)
        gc.collect()
        # every rank done (the main one writes the export and the plots last) before any tears down
        # its connections: a rank that left early was seen aborting in gloo's teardown
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
