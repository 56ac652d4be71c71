"""``bertdetr bert ...`` subcommands: options in, typed configs and plain arguments out."""

from __future__ import annotations

import argparse
import dataclasses
import os

from bertdetr.options import absl_bool as _absl_bool
from bertdetr.options import add_flag


def add_subcommands(commands: argparse._SubParsersAction) -> None:
    _add_build_vocab(commands)
    _add_make_data(commands)
    _add_convert(commands)
    _add_pretrain(commands)
    _add_fill_mask(commands)
    _add_embed(commands)
    _add_classify(commands)
    _add_squad(commands)
    _add_ner(commands)
    _add_multiple_choice(commands)
    _add_tag(commands)


def _add_build_vocab(commands) -> None:
    p = commands.add_parser(
        "build-vocab",
        help="train a WordPiece vocab.txt in Google's layout",
        description="Train a WordPiece vocabulary on text files and write vocab.txt in Google's "
        "layout ([PAD], [unused*], [UNK], [CLS], [SEP], [MASK], pieces).",
    )
    p.add_argument("--input-file", "--input_file", dest="input_file", action="append", required=True,
                   help="text file(s) or globs, comma-separated or repeated")
    p.add_argument("--output", "--vocab-file", "--vocab_file", dest="output", required=True,
                   help="vocab.txt to write")
    p.add_argument("--vocab-size", "--vocab_size", dest="vocab_size", type=int, default=30522,
                   help="entries of the vocab.txt written (fewer if the corpus is too small)")
    case = p.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="do_lower_case", action="store_true", default=True,
                      help="lowercase and strip accents (uncased model; the default)")
    case.add_argument("--cased", dest="do_lower_case", action="store_false",
                      help="keep case and accents (cased model)")
    add_flag(case, "--do-lower-case", "--do_lower_case", dest="do_lower_case", default=True,
             help="Google's spelling of --lowercase/--cased: true (the default) or false")
    p.add_argument("--num-unused", "--num_unused", dest="num_unused", type=int, default=99,
                   help="[unused*] slots reserved before [UNK] (default 99, as bert-base)")
    p.add_argument("--min-frequency", "--min_frequency", dest="min_frequency", type=int, default=2,
                   help="every character seen at least this often is kept (a Chinese corpus keeps its thousands; "
                   "rarer characters become [UNK]), and a merge is learned only from pairs seen this often")
    p.add_argument("--limit-alphabet", "--limit_alphabet", dest="limit_alphabet", type=int, default=None,
                   help="keep at most this many characters, the most frequent (default: no limit, every "
                   "character seen --min-frequency times)")
    p.set_defaults(func=_run_build_vocab)


def _run_build_vocab(args) -> int:
    from bertdetr.bert.data.vocab import VocabConfig, build_vocab

    config = VocabConfig(
        vocab_size=args.vocab_size,
        do_lower_case=args.do_lower_case,
        num_unused=args.num_unused,
        min_frequency=args.min_frequency,
        limit_alphabet=args.limit_alphabet,
    )
    tokens = build_vocab(args.input_file, args.output, config)
    note = "" if len(tokens) == config.vocab_size else f" (corpus too small for {config.vocab_size})"
    print(f"wrote {args.output}: {len(tokens)} entries{note}")
    return 0


def _add_make_data(commands) -> None:
    p = commands.add_parser(
        "make-data",
        help="pretraining data (NSP pairs, masked LM) as TFRecords, as Google's create_pretraining_data.py",
        description="Make BERT pretraining data exactly as Google's create_pretraining_data.py "
        "(same flags, same records for one input file), streaming shard by shard. Input: one "
        "sentence a line, blank lines between documents. Each input file is a shard with its own "
        "outputs and seed (random_seed + its index in the sorted input list).",
    )
    p.add_argument("--input-file", "--input_file", dest="input_file", action="append", required=True,
                   help="text file(s) or globs, comma-separated or repeated")
    p.add_argument("--output-file", "--output_file", dest="output_file", required=True,
                   help="TFRecord file(s), comma-separated: written round-robin, as Google's. With "
                   "several inputs, a template with {index} (e.g. out/{index:05d}.tfrecord) or {name} "
                   "(input file name), or a directory (DIR/{index:05d}-{name}.tfrecord)")
    p.add_argument("--vocab-file", "--vocab_file", dest="vocab_file", required=True,
                   help="vocab.txt the model is trained with")
    # Google's flags: one option per field of PretrainingDataConfig (help = its docstrings)
    from bertdetr.options import add_field_options, field_specs

    add_field_options(p, "bertdetr.bert.pretraining.create_pretraining_data", "PretrainingDataConfig",
                      list(field_specs("bertdetr.bert.pretraining.create_pretraining_data", "PretrainingDataConfig")),
                      choices={"word_segmenter": ["jieba"]})
    p.add_argument("--ref-file", "--ref_file", dest="ref_file", default=None,
                   help="Chinese whole-word masking from transformers' run_chinese_ref.py output (one "
                   "JSON list of positions per non-blank corpus line, [CLS] at 0), e.g. from LTP; with "
                   "several inputs a template with {name} or {index}. Needs --do-whole-word-mask")
    p.add_argument("--workers", type=int, default=1, help="input shards processed in parallel (default 1)")
    p.add_argument("--shard-index", "--shard_index", dest="shard_index", type=int, default=0,
                   help="with --num-shards: process only inputs i with i %% num_shards == shard_index")
    p.add_argument("--num-shards", "--num_shards", dest="num_shards", type=int, default=1,
                   help="with --shard-index: split the inputs over this many tasks")
    add_flag(p, "--progress", dest="progress", default=True, help="show a progress bar (--no-progress: none)")
    p.set_defaults(func=_run_make_data)


def _run_make_data(args) -> int:
    import dataclasses

    from bertdetr.bert.pretraining.make_data import make_pretraining_data
    from bertdetr.bert.pretraining.create_pretraining_data import PretrainingDataConfig

    # every config field is an option of the same name (Google's flag names)
    config = PretrainingDataConfig(**{f.name: getattr(args, f.name)
                                      for f in dataclasses.fields(PretrainingDataConfig)})
    summary = make_pretraining_data(
        args.input_file, args.output_file, args.vocab_file, config,
        workers=args.workers, shard_index=args.shard_index, num_shards=args.num_shards,
        progress=args.progress, ref_file=args.ref_file,
    )
    if not summary.inputs:
        print(f"no input files for shard {args.shard_index} of {args.num_shards}: nothing written")
        return 0
    files = summary.outputs
    shown = ", ".join(files[:4]) + (f", ... ({len(files)} files)" if len(files) > 4 else "")
    print(f"{len(summary.inputs)} input file(s): {summary.documents} documents, {summary.tokens} tokens "
          f"-> {summary.instances} instances in {len(files)} file(s): {shown}")
    return 0


def _add_convert(commands) -> None:
    p = commands.add_parser(
        "convert",
        help="convert Google's TF checkpoint (bert_model.ckpt) to a Hugging Face format directory",
        description="Read Google's bert_model.ckpt and bert_config.json (needs TensorFlow: "
        "pip install 'bertdetr[tf]') and write config.json + model.safetensors, which "
        "BertForPreTraining.from_pretrained and transformers load. vocab.txt beside the checkpoint "
        "is copied.",
    )
    p.add_argument("--tf-checkpoint", "--tf_checkpoint", dest="tf_checkpoint", required=True,
                   help="checkpoint prefix, e.g. uncased_L-12_H-768_A-12/bert_model.ckpt")
    p.add_argument("--config", "--bert-config-file", "--bert_config_file", dest="config", default=None,
                   help="bert_config.json (default: beside the checkpoint)")
    p.add_argument("--output", dest="output", required=True, help="directory to write")
    add_flag(p, "--encoder-only", "--encoder_only", dest="encoder_only", default=False,
             help="write only the encoder (BertModel), without the pretraining heads")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> int:
    import os

    from bertdetr.bert.convert import convert_tf_checkpoint

    config = args.config or os.path.join(os.path.dirname(os.path.abspath(args.tf_checkpoint)), "bert_config.json")
    model = convert_tf_checkpoint(args.tf_checkpoint, config, args.output, heads=not args.encoder_only)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {type(model).__name__}, {n:,} parameters")
    return 0


# PretrainConfig fields that are options as they are (help and default from the dataclass);
# input_files, eval_files and model are made from other options below.
_PRETRAIN_FIELDS = [
    "output_dir", "vocab_file", "do_lower_case", "init_checkpoint", "batch_size", "grad_accum", "eval_batch_size",
    "max_eval_steps", "eval_every", "learning_rate", "num_train_steps", "num_warmup_steps", "optimizer",
    "weight_decay", "max_grad_norm", "save_every", "keep_last", "log_every", "seed", "bf16", "fp16", "compile",
    "compile_mode", "unpad", "num_workers", "num_threads", "shuffle_buffer", "masked_lm_prob", "max_predictions_per_seq",
    "max_non_finite_steps", "resume",
    "overwrite", "stop_at_step", "profile_steps", "tensorboard", "device", "progress",
]


def _add_pretrain(commands) -> None:
    from bertdetr.options import add_field_options

    p = commands.add_parser(
        "pretrain",
        help="pretrain BERT on make-data TFRecords (plain or under torchrun)",
        description="Google's run_pretraining.py: masked LM + next sentence on TFRecords of make-data. "
        "Run it as is for one process, or under torchrun for DistributedDataParallel. Every option is a "
        "field of bertdetr.bert.pretraining.pretrain.PretrainConfig (Google's flag names are accepted too).",
    )
    p.add_argument("--input-file", "--input_file", dest="input_file", action="append", required=True,
                   help="TFRecord file(s) or globs, comma-separated or repeated")
    p.add_argument("--eval-file", "--eval_file", dest="eval_files", action="append", default=[],
                   help="held-out TFRecords (files or globs) evaluated at the end (Google's --do_eval)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--bert-config-file", "--bert_config_file", dest="bert_config_file",
                       help="Google's bert_config.json or HF's config.json")
    model.add_argument("--model-size", dest="model_size", default=None,
                       help="one of Google's sizes: tiny, mini, small, medium, base, large (default base)")
    add_field_options(
        p, "bertdetr.bert.pretraining.pretrain", "PretrainConfig", _PRETRAIN_FIELDS, required=("output_dir",),
        aliases={"batch_size": ["--train-batch-size", "--train_batch_size"],
                 "save_every": ["--save-checkpoints-steps", "--save_checkpoints_steps"]},
        choices={"optimizer": ["adam", "lamb"]},
        help={"vocab_file": "vocab.txt of the data: sets vocab_size for --model-size, is checked against the "
                            "records and copied into the exported model"})
    p.set_defaults(func=_run_pretrain)


def _run_pretrain(args) -> int:
    from bertdetr.bert.model import BertConfig
    from bertdetr.bert.pretraining.pretrain import PretrainConfig, check_model_size, model_preset, pretrain
    from bertdetr.bert.data.tokenization import load_vocab
    from bertdetr.errors import BertDetrError
    from bertdetr.fileio import expand_inputs

    inputs = expand_inputs(args.input_file)
    evals = expand_inputs(args.eval_files) if args.eval_files else []
    if args.init_checkpoint and args.model_size:  # the architecture is the checkpoint's: a size is not taken
        check_model_size(args.init_checkpoint, args.model_size)
    if args.bert_config_file:
        model = BertConfig.from_json_file(args.bert_config_file)
    elif args.vocab_file:
        model = model_preset(args.model_size or "base", len(load_vocab(args.vocab_file)))
    elif args.init_checkpoint:
        model = model_preset(args.model_size or "base", 30522)
    else:
        # the model's vocab_size must be the data's vocabulary size; guessing bert-base's 30522
        # fails later (or trains embedding rows no id uses)
        raise BertDetrError("give --vocab-file (the vocab.txt of the data, which sets the model's vocab_size) "
                            "or --bert-config-file")
    config = PretrainConfig(input_files=inputs, eval_files=evals, model=model,
                            **{name: getattr(args, name) for name in _PRETRAIN_FIELDS})
    summary = pretrain(config)
    if int(os.environ.get("RANK", "0")) == 0 and not summary.get("complete"):  # (complete: said by pretrain)
        print(f"step {summary['step']}: loss {summary['losses'].get('loss', float('nan')):.4f}; "
              f"checkpoint {summary['checkpoint']}")
        for key, value in summary.get("eval", {}).items():
            print(f"  {key} = {value:.4f}" if isinstance(value, float) else f"  {key} = {value}")
        if "export" in summary:
            print(f"model exported to {summary['export']}")
    return 0


def _add_fill_mask(commands) -> None:
    p = commands.add_parser("fill-mask", help="top-k tokens for each [MASK] in a text",
                            description="Predict the tokens hidden by [MASK] with a pretrained BERT.")
    p.add_argument("--model", required=True, help="model directory (HF format with vocab.txt)")
    p.add_argument("text", nargs="+", help="text(s) with [MASK]")
    p.add_argument("--top-k", dest="top_k", type=int, default=5, help="tokens shown for each [MASK]")
    _add_device(p)
    p.set_defaults(func=_run_fill_mask)


def _add_device(p) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:K, -1 (the CPU), K (GPU K); default: cuda if any")


def _run_fill_mask(args) -> int:
    from bertdetr.bert.inference import fill_mask, load_model
    from bertdetr.devices import inference_device

    model, tokenizer = load_model(args.model, inference_device(args.device))
    for text in args.text:
        print(text)
        for pred in fill_mask(model, tokenizer, text, args.top_k):
            guesses = "  ".join(f"{t} {p:.3f}" for t, p in zip(pred.tokens, pred.probs))
            print(f"  [MASK] at {pred.position}: {guesses}")
    return 0


def _add_embed(commands) -> None:
    p = commands.add_parser("embed", help="sentence vectors of each line of a text file (.npy)",
                            description="Write one vector per input line: mean of the last layer, or the pooler.")
    p.add_argument("--model", required=True, help="model directory (HF format with vocab.txt)")
    p.add_argument("--input-file", dest="input_file", required=True, help="text file, one sentence a line")
    p.add_argument("--output", required=True,
                   help=".npy file to write, float32 [lines, hidden]: row i is line i of the input (a blank "
                   "line gets the vector of an empty text, [CLS] [SEP])")
    p.add_argument("--pooling", choices=["mean", "pooled"], default="mean",
                   help="mean: mean of the last layer over the tokens; pooled: the NSP pooler of [CLS]")
    p.add_argument("--max-seq-length", dest="max_seq_length", type=int, default=128,
                   help="tokens per line at most ([CLS] and [SEP] included; longer lines are cut)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="lines per forward pass")
    _add_device(p)
    p.set_defaults(func=_run_embed)


def _run_embed(args) -> int:
    import numpy as np

    from bertdetr.bert.inference import embed, load_model
    from bertdetr.devices import inference_device
    from bertdetr.fileio import atomic_output

    # row i is line i: a blank line is embedded as an empty text ([CLS] [SEP]), as
    # sentence-transformers does, so rows stay aligned with the input's lines
    lines = [line.strip() for line in _input_lines(args.input_file, args.output)]
    model, tokenizer = load_model(args.model, inference_device(args.device))
    vectors = embed(model, tokenizer, lines, args.pooling, args.max_seq_length, args.batch_size)
    with atomic_output(args.output, "wb") as f:
        np.save(f, vectors)
    print(f"wrote {args.output}: {vectors.shape[0]} vectors of size {vectors.shape[1]} ({args.pooling})")
    return 0


def _add_tag(commands) -> None:
    p = commands.add_parser("tag", help="named entities of each line of a text file (JSON lines), with a bert ner model",
                            description="Tag raw text with a token-classification model (bert ner's, or a "
                            "transformers folder): transformers' token-classification pipeline on each line.")
    p.add_argument("--model", required=True, help="model directory (bert ner's model/, or transformers')")
    p.add_argument("--input-file", dest="input_file", required=True, help="text file, one text a line")
    p.add_argument("--output", required=True,
                   help=".jsonl to write: line i is {\"text\": line i, \"entities\": [...]}, each entity "
                   "transformers' dict plus \"span\", the text it covers (a blank line gets no entities)")
    p.add_argument("--aggregation", choices=["none", "simple", "first", "average", "max"], default="simple",
                   help="transformers' aggregation_strategy: simple groups B-/I- tokens into entities; first, "
                   "average, max first make each word's pieces agree; none: every tagged token")
    p.add_argument("--stride", type=int, default=None,
                   help="read lines longer than the model in windows overlapping by this many tokens (default: "
                   "cut at the model's length)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=32, help="lines per forward pass")
    p.add_argument("--format", choices=["pipeline", "cluener"], default="pipeline",
                   help="pipeline: the lines above; cluener: CLUENER2020's layout, line i {\"id\": i, \"text\": "
                   "line i, \"label\": {type: {entity text: [[first, last]]}}} (character offsets, the last "
                   "included), as bert ner --data-format cluener reads and writes it")
    add_flag(p, "--progress", dest="progress", default=True, help="show a progress bar (--no-progress: none)")
    _add_device(p)
    p.set_defaults(func=_run_tag)


def _run_tag(args) -> int:
    import json

    from bertdetr.bert.pipelines import pipeline
    from bertdetr.devices import inference_device
    from bertdetr.fileio import atomic_output

    if args.format == "cluener" and args.aggregation == "none":
        from bertdetr.errors import BertDetrError

        raise BertDetrError("--format cluener writes entities: give an --aggregation other than none")
    lines = _input_lines(args.input_file, args.output)
    tagger = pipeline("token-classification", args.model, aggregation_strategy=args.aggregation, stride=args.stride,
                      batch_size=args.batch_size, device=inference_device(args.device))
    found, chunk = 0, max(args.batch_size * 64, 1024)  # lines per call: a bar that moves, batches of like length
    bar = None
    if args.progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(total=len(lines), unit=" lines", desc="tag", file=sys.stderr, dynamic_ncols=True)
    with atomic_output(args.output, "w") as f:
        for first in range(0, len(lines), chunk):
            part = lines[first:first + chunk]
            for i, (line, found_here) in enumerate(zip(part, tagger(part)), first):
                rows = [{**e, "span": line[e["start"]:e["end"]]} for e in found_here]
                found += len(rows)
                f.write(json.dumps(_cluener_line(i, line, rows) if args.format == "cluener" else
                                   {"text": line, "entities": rows}, ensure_ascii=False) + "\n")
            if bar is not None:
                bar.update(len(part))
    if bar is not None:
        bar.close()
    print(f"wrote {args.output}: {found} entities in {len(lines)} lines ({args.aggregation})")
    if tagger.texts_cut:  # their ends were never read, so no entity there is in the output
        import warnings

        warnings.warn(f"{tagger.texts_cut} of the {len(lines)} lines were longer than the model's "
                      f"{tagger.model.config.max_position_embeddings} positions and cut there (their ends not "
                      "tagged): --stride N reads them whole, in windows overlapping by N tokens", stacklevel=2)
    return 0


def _cluener_line(index: int, text: str, entities: list[dict]) -> dict:
    """A tagged line in CLUENER2020's layout: its entities by type and text, [first, last] offsets."""
    label: dict = {}
    for e in entities:
        label.setdefault(e["entity_group"], {}).setdefault(e["span"], []).append([e["start"], e["end"] - 1])
    return {"id": index, "text": text, "label": label}


def _input_lines(path: str, output: str) -> list[str]:
    """The lines of the text file ``path`` without their line ends (nor a UTF-8 byte order mark, as
    Windows' Notepad writes one), once the file is there and ``output`` can be written and is not
    ``path`` itself (checked before any work). UTF-8 as make-data reads it (``TextCheck``): a few
    stray bytes dropped, a file in another encoding (GBK, say) or not text an error, not lines of
    garbage."""
    from bertdetr.errors import BertDetrError
    from bertdetr.fileio import TextCheck, check_not_an_input, check_writable

    if not os.path.isfile(path):
        raise BertDetrError(f"input file not found: {path}")
    check_not_an_input(output, [path])
    check_writable(output)
    check = TextCheck(path)
    with open(path, "rb") as f:
        lines = [check.decode(raw, n).rstrip("\r\n") for n, raw in enumerate(f, 1)]
    check.finish()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return lines


def _main_rank() -> bool:
    """Whether this process is the run's main one (always, unless torchrun started it as another rank)."""
    return int(os.environ.get("RANK", "0")) == 0


def _finetune_options(parser, module: str, class_name: str, **kwargs) -> None:
    """Every field of a fine-tuning config (``bertdetr.bert.finetuning.finetune.FinetuneConfig`` and the
    program's own) as an option: Google's flag names, help from the field docstrings, the fields
    without a default required and listed first."""
    from bertdetr.options import add_field_options, field_specs

    specs = field_specs(module, class_name)
    names = sorted(specs, key=lambda name: specs[name].default is not dataclasses.MISSING)
    add_field_options(parser, module, class_name, names,
                      required=tuple(n for n in names if specs[n].default is dataclasses.MISSING), **kwargs)


# bertdetr.bert.finetuning.classifier.PROCESSORS' names (a test keeps them equal), spelled out here so that
# building the command line imports no torch: `bertdetr bert make-data` starts in 0.03 s, not 2 s.
TASK_NAMES = ("cola", "mnli", "mrpc", "xnli", "afqmc", "tnews", "iflytek", "cmnli", "ocnli", "csl", "wsc", "tsv")


def _add_classify(commands) -> None:
    p = commands.add_parser(
        "classify",
        help="fine-tune BERT for classification, as Google's run_classifier.py (GLUE and CLUE tasks, own TSV/CSV)",
        description="Google's run_classifier.py: fine-tune, evaluate and predict on GLUE's CoLA, MNLI, "
        "MRPC, XNLI files, the Chinese tasks of CLUE (AFQMC, TNEWS, IFLYTEK, CMNLI, OCNLI, CSL, WSC: their "
        "JSON files, read as CLUE's baseline reads them) or your own TSV/CSV (--task-name tsv). Writes "
        "train/eval/predict.tf_record (Google's features), checkpoints, eval_results.txt and eval_metrics.json "
        "(the task's GLUE or CLUE metric), test_results.tsv (class probabilities; for CLUE also "
        "<task>_predict.json, CLUE's submission lines), and the fine-tuned model in OUTPUT_DIR/model. Every "
        "option is a field of bertdetr.bert.finetuning.classifier.ClassifierConfig (Google's flag names are accepted too).",
    )
    _finetune_options(p, "bertdetr.bert.finetuning.classifier", "ClassifierConfig",
                      choices={"task_name": list(TASK_NAMES)}, types={"task_name": str.lower})
    p.set_defaults(func=_run_classify)


def _fine_tuning_config(args, config_class):
    """``config_class`` (a fine-tuning config) of the parsed options: each of its fields is the
    option of the same name (``_finetune_options``)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names})


def _report_training(summary: dict) -> None:
    """A fine-tuning run's training line: the steps done, and where the model went or how to go on."""
    if "num_train_steps" in summary:
        done = summary["step"] >= summary["num_train_steps"]
        print(f"trained {summary['step']} of {summary['num_train_steps']} steps"
              + (f"; model exported to {summary['export']}" if done else "; --resume to continue"))


def _run_classify(args) -> int:
    from bertdetr.bert.finetuning.classifier import ClassifierConfig, run_classifier

    config = _fine_tuning_config(args, ClassifierConfig)
    summary = run_classifier(config)
    if not _main_rank():
        return 0  # torchrun: the main process reports
    for name, path in summary["features"].items():
        print(f"{name} features -> {path}")
    _report_training(summary)
    if "eval" in summary:
        print("eval: " + ", ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}"
                                   for k, v in summary["eval"].items()))
    if "predictions" in summary:
        print(f"{summary['predictions']} predictions -> {os.path.join(config.output_dir, 'test_results.tsv')}")
    return 0


def _add_squad(commands) -> None:
    p = commands.add_parser(
        "squad",
        help="fine-tune and predict on SQuAD 1.1/2.0, as Google's run_squad.py",
        description="Google's run_squad.py: SQuAD 1.1 and 2.0 (--version-2-with-negative) read, converted "
        "to windows (train.tf_record, eval.tf_record in --output-dir, as Google's), a span head fine-tuned "
        "on BERT with Google's optimizer, predictions.json, nbest_predictions.json, null_odds.json (2.0) "
        "and the official EM/F1 in eval_metrics.json. Every option is a field of "
        "bertdetr.bert.finetuning.squad.SquadConfig (Google's flag names are accepted too).",
    )
    _finetune_options(p, "bertdetr.bert.finetuning.squad", "SquadConfig", choices={"metric": ["squad", "cmrc2018"]})
    p.set_defaults(func=_run_squad)


def _run_squad(args) -> int:
    from bertdetr.bert.finetuning.squad import SquadConfig, run_squad

    config = _fine_tuning_config(args, SquadConfig)
    summary = run_squad(config)
    if not _main_rank():
        return 0  # torchrun: the main process reports
    for name, (path, examples, windows) in summary["features"].items():
        print(f"wrote {path}: {examples} examples, {windows} windows")
    if summary.get("skipped"):
        print(f"skipped {summary['skipped']} training answers not found in their paragraphs (as Google's)")
    _report_training(summary)
    if "step" in summary and "num_train_steps" not in summary:
        print(f"no training in this run: the model at step {summary['step']}")
    if "predictions" in summary:
        print(f"wrote predictions for {summary['predictions']} questions to {config.output_dir}")
    if summary.get("not_scored"):
        print(f"not scored: {config.predict_file}: {summary['not_scored']}")
    for key, value in summary.get("metrics", {}).items():
        print(f"  {key} = {value:.4f}" if isinstance(value, float) else f"  {key} = {value}")
    return 0


def _add_multiple_choice(commands) -> None:
    p = commands.add_parser(
        "multiple-choice",
        help="fine-tune BERT for multiple choice (CLUE's C3 and CHID, the BERT paper's SWAG)",
        description="Multiple-choice reading comprehension in the style of Google's run_classifier.py "
        "(flags, outputs), as CLUE's baselines do the tasks. --task c3 (run_c3.py): --data-dir with C3's "
        "c3-d-{train,dev,test}.json and c3-m-{train,dev,test}.json (or CLUE's zip's d-train.json, m-train.json, "
        "..., test1.1.json); each choice is read as [CLS] document "
        "[SEP] question [SEP] choice [SEP] (questions with fewer choices are filled up with 无效答案). --task "
        "chid (run_multichoice_mrc.py, the idiom cloze): train.json, dev.json, test.json (or test1.1.json) with "
        "train_answer.json, dev_answer.json; each candidate idiom is read as [CLS] idiom [SEP] the text "
        "around the blank [SEP], and each line's candidates are given out once over its blanks. --task swag "
        "(the BERT paper's, as transformers' run_swag.py): train.csv, val.csv, test.csv; each ending is read "
        "as [CLS] sent1 [SEP] sent2 ending [SEP]. Each choice "
        "is scored from its [CLS] vector and a question's choices compete in one softmax. Writes "
        "eval_results.txt and eval_metrics.json (dev accuracy), test_results.tsv (each test question's "
        "choice probabilities), CLUE's answers (C3: submission_test.json; CHID: test_predictions.json and "
        "dev_predictions.json) and the model as a transformers BertForMultipleChoice in OUTPUT_DIR/model. "
        "Every option is a field of bertdetr.bert.finetuning.multiple_choice.MultipleChoiceConfig.",
    )
    _finetune_options(p, "bertdetr.bert.finetuning.multiple_choice", "MultipleChoiceConfig",
                      choices={"task": ["c3", "chid", "swag"]})
    p.set_defaults(func=_run_multiple_choice)


def _run_multiple_choice(args) -> int:
    from bertdetr.bert.finetuning.multiple_choice import MultipleChoiceConfig, run_multiple_choice

    config = _fine_tuning_config(args, MultipleChoiceConfig)
    summary = run_multiple_choice(config)
    if not _main_rank():
        return 0  # torchrun: the main process reports
    for name, (path, questions) in summary["features"].items():
        print(f"wrote {path}: {questions} questions")
    _report_training(summary)
    if "eval" in summary:
        e = summary["eval"]
        print(f"eval: accuracy {e['eval_accuracy']:.4f} over {e['num_examples']} questions, loss {e['eval_loss']:.4f}")
    if "predictions" in summary:
        answers = {"c3": "submission_test.json, ", "chid": "test_predictions.json, "}.get(config.task, "")
        print(f"answered {summary['predictions']} questions -> {config.output_dir}: {answers}test_results.tsv")
    return 0


def _add_ner(commands) -> None:
    p = commands.add_parser(
        "ner",
        help="fine-tune BERT for named entities (token classification) on CoNLL or CLUENER files",
        description="Named entities in the style of Google's run_classifier.py (flags, outputs), as "
        "transformers' run_ner.py does the task: --data-dir with train.txt, dev.txt, test.txt in CoNLL "
        "layout (a token and its tag a line, tab or space separated, a blank line between sentences; "
        "Chinese one character a line), BIO, BIOES or BMES tags read from the data; or train.json, dev.json, "
        "test.json in CLUENER2020's layout (a JSON line per text with its entities' offsets, read as "
        "CLUENER's baseline reads them: a character a word, BIOS tags). The first piece of each "
        "word carries its tag; long sentences are cut into windows so every word is tagged. --crf scores "
        "the tags with a linear-chain CRF and decodes them by Viterbi (CLUENER's BERT+CRF baseline, its "
        "CRF and classifier at --crf-learning-rate); --span tags start and end pointers per token (CLUENER's "
        "BERT+Span baseline). Writes "
        "eval_results.txt and eval_metrics.json (entity-level precision, recall, F1 as seqeval's; for "
        "CLUENER also its official score), test_predictions.txt (token, gold tag if any, predicted tag; "
        "for CLUENER cluener_predict.json, its submission lines) and the model as a transformers "
        "BertForTokenClassification in OUTPUT_DIR/model. Every option is a field of "
        "bertdetr.bert.finetuning.ner.NerConfig.",
    )
    _finetune_options(p, "bertdetr.bert.finetuning.ner", "NerConfig",
                      choices={"data_format": ["auto", "conll", "cluener"]})
    p.set_defaults(func=_run_ner)


def _run_ner(args) -> int:
    from bertdetr.bert.finetuning.ner import NerConfig, run_ner

    config = _fine_tuning_config(args, NerConfig)
    summary = run_ner(config)
    if not _main_rank():
        return 0  # torchrun: the main process reports
    for name, (path, sentences, windows) in summary["features"].items():
        print(f"wrote {path}: {sentences} sentences, {windows} windows")
    _report_training(summary)
    if "eval" in summary:
        e = summary["eval"]
        print(f"eval: precision {e['eval_precision']:.4f}, recall {e['eval_recall']:.4f}, f1 {e['eval_f1']:.4f}, "
              f"accuracy {e['eval_accuracy']:.4f}, loss {e['eval_loss']:.4f}"
              + (f"; CLUENER's score (macro F1) {e['eval_cluener_macro_f1']:.4f}" if "cluener" in e else ""))
    if "predictions" in summary:
        name = "cluener_predict.json" if config.data_format == "cluener" else "test_predictions.txt"
        print(f"tagged {summary['predictions']} sentences -> {os.path.join(config.output_dir, name)}")
    return 0
