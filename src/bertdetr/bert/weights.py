"""BERT weight files in and out, for every model: Hugging Face directories and Google's TF checkpoints.

The loading machinery under the models, as transformers' ``modeling_utils.py`` is under its
``modeling_bert.py``: the models' ``from_pretrained``/``save_pretrained`` (``bert/model.py``,
``bert/heads.py``) call the functions here, and nothing here imports a model (the models are
duck-typed: ``model.config``, ``model.bert``, ``model.output_weights``...), so no import runs back
up. Converting Google's TF checkpoints into directories, which builds models, is above them
(``bert/convert.py``); the task heads' layouts are beside this file (``bert/head_weights.py``).

The models name their tensors after their own modules; this file holds the one
table from those names to HF's (``_name_pairs``), and Google's variable names map onto HF's by a
fixed rewrite (``google_to_hf_name``). The only non-rename is attention: HF and Google keep
separate query/key/value matrices, concatenated here into the fused ``in_proj_weight`` [3D, D]
(q, k, v row blocks, the order of ``torch.nn.MultiheadAttention``) and split again on save.

Loading is strict about the encoder (a missing, unexpected or mis-shaped tensor is an error naming
it) and lenient about heads: a pretraining head absent from an encoder-only checkpoint is
initialised as Google's, with a warning; tensors of other heads (e.g. a fine-tuned classifier) are
reported in a warning and skipped.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors import SafetensorError

from bertdetr.errors import BertDetrError, warn_at_caller
from bertdetr.fileio import atomic_output
from bertdetr.training.precision import inference_dtype

if TYPE_CHECKING:
    from bertdetr.bert.data.tokenization import FullTokenizer

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
CONFIG = "config.json"

# HF keys that carry no information of their own: the tied decoder (the word embeddings and
# cls.predictions.bias again) and old versions' position_ids buffer.
_REDUNDANT = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "embeddings.position_ids")


class WeightsError(BertDetrError):
    """A checkpoint that does not fit the model (names or shapes), or cannot be read."""


def _name_pairs(config, heads: bool) -> Iterator[tuple[str, str | tuple[str, str, str]]]:
    """(our name, HF name) for every tensor; the HF side of in_proj is (query, key, value).

    Names are relative to BertModel (HF: without the ``bert.`` prefix); head names are those of
    BertForPreTraining on both sides (ours ``masked_lm.*``, HF ``cls.*``)."""
    yield "embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"
    yield "embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"
    yield "embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"
    for p in ("weight", "bias"):
        yield f"embeddings.norm.{p}", f"embeddings.LayerNorm.{p}"
    for i in range(config.num_hidden_layers):
        ours, hf = f"layers.{i}", f"encoder.layer.{i}"
        for p in ("weight", "bias"):
            yield f"{ours}.self_attn.in_proj_{p}", tuple(f"{hf}.attention.self.{n}.{p}" for n in ("query", "key", "value"))
            yield f"{ours}.self_attn.out_proj.{p}", f"{hf}.attention.output.dense.{p}"
            yield f"{ours}.norm1.{p}", f"{hf}.attention.output.LayerNorm.{p}"
            yield f"{ours}.ffn.fc1.{p}", f"{hf}.intermediate.dense.{p}"
            yield f"{ours}.ffn.fc2.{p}", f"{hf}.output.dense.{p}"
            yield f"{ours}.norm2.{p}", f"{hf}.output.LayerNorm.{p}"
    for p in ("weight", "bias"):
        yield f"pooler.dense.{p}", f"pooler.dense.{p}"
    if heads:
        yield "masked_lm.output_bias", "cls.predictions.bias"
        for p in ("weight", "bias"):
            yield f"masked_lm.dense.{p}", f"cls.predictions.transform.dense.{p}"
            yield f"masked_lm.norm.{p}", f"cls.predictions.transform.LayerNorm.{p}"
            yield f"next_sentence.{p}", f"cls.seq_relationship.{p}"


def _is_head(ours_name: str) -> bool:
    return ours_name.startswith(("masked_lm.", "next_sentence."))


def to_hf_state_dict(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Our state dict (or any dict of per-parameter tensors, e.g. gradients) -> HF names.

    Keys of a BertForPreTraining (``bert.*``, heads) give HF BertForPreTraining keys; keys of a
    BertModel give HF BertModel keys (no prefix). Split tensors are copies, not views."""
    heads = any(k.startswith("bert.") for k in state)
    prefix = "bert." if heads else ""
    out: dict[str, torch.Tensor] = {}
    for ours, hf in _name_pairs(config, heads):
        key = ours if _is_head(ours) else prefix + ours
        t = state[key]
        if isinstance(hf, tuple):
            for name, part in zip(hf, t.chunk(3, dim=0)):
                out[prefix + name] = part.clone()
        else:
            out[hf if _is_head(ours) else prefix + hf] = t
    return out


def _normalise_hf_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # pytorch-pretrained-bert era checkpoints name LayerNorm parameters gamma/beta (as Google).
    def fix(k: str) -> str:
        return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k))

    return {fix(k): v for k, v in state.items()}


def from_hf_state_dict(
    state: dict[str, torch.Tensor], config, heads: bool
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """HF-named tensors -> (our names (``bert.*`` and heads if ``heads``), missing HF names,
    unexpected HF names). Accepts HF BertModel keys (no prefix) and BertForPreTraining keys."""
    state = _normalise_hf_keys(state)
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    ours_prefix = "bert." if heads else ""
    if "cls.predictions.bias" not in state and "cls.predictions.decoder.bias" in state:
        state["cls.predictions.bias"] = state["cls.predictions.decoder.bias"]
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for ours, hf in _name_pairs(config, heads):
        head = _is_head(ours)
        names = [n if head else prefix + n for n in (hf if isinstance(hf, tuple) else (hf,))]
        absent = [n for n in names if n not in state]
        if absent:
            missing.extend(absent)
            continue
        used.update(names)
        out[ours if head else ours_prefix + ours] = (
            torch.cat([state[n] for n in names], dim=0) if len(names) > 1 else state[names[0]]
        )
    unexpected = [k for k in state if k not in used and not k.endswith(_REDUNDANT)]
    return out, missing, unexpected


def load_state_into(model, state: dict[str, torch.Tensor], source: str, heads: bool) -> None:
    """Loads HF-named ``state`` into ``model`` (a BertModel, or with ``heads`` a BertForPreTraining);
    raises ``WeightsError`` naming every missing, unexpected or mis-shaped encoder tensor; warns
    about missing heads (kept at Google's init) and about tensors of other heads (skipped)."""
    config = model.config
    ours, missing, unexpected = from_hf_state_dict(state, config, heads)
    head_missing = [n for n in missing if n.startswith("cls.")]
    body_missing = [n for n in missing if not n.startswith("cls.")]
    # transformers' BertForMaskedLM (what its MLM scripts save) has no pooler: start it as Google's.
    pooler_missing = [n for n in body_missing if n.endswith(("pooler.dense.weight", "pooler.dense.bias"))]
    body_missing = [n for n in body_missing if n not in pooler_missing]
    # cls.* is a head we do not load into a BertModel; anything else unknown is an encoder
    # tensor the config has no place for (a different layer count, say): an error.
    body_unexpected = [n for n in unexpected if n.startswith(("bert.", "embeddings.", "encoder.", "pooler."))]
    other_unexpected = [n for n in unexpected if n not in body_unexpected and not (not heads and n.startswith("cls."))]
    target = model.state_dict()
    misshaped = [
        f"{name} (checkpoint {list(t.shape)}, model {list(target[name].shape)})"
        for name, t in ours.items()
        if tuple(t.shape) != tuple(target[name].shape)
    ]
    problems = []
    if misshaped:
        problems.append("mis-shaped tensors (config sizes disagree with the checkpoint): " + ", ".join(misshaped))
    if body_missing:
        problems.append("missing tensors: " + ", ".join(body_missing))
    if body_unexpected:
        problems.append("unexpected tensors (check num_hidden_layers): " + ", ".join(body_unexpected))
    if problems:
        c = config
        raise WeightsError(
            f"checkpoint {source} does not fit the config (vocab_size {c.vocab_size}, hidden_size "
            f"{c.hidden_size}, num_hidden_layers {c.num_hidden_layers}, intermediate_size "
            f"{c.intermediate_size}, max_position_embeddings {c.max_position_embeddings}, "
            f"type_vocab_size {c.type_vocab_size}): " + "; ".join(problems)
        )
    if pooler_missing:
        warn_at_caller(
            f"checkpoint {source} has no pooler ({', '.join(pooler_missing)}; a BertForMaskedLM save?): "
            "the pooler is initialised as Google's (truncated normal), not trained; fine-tuning trains it"
        )
    if head_missing:
        warn_at_caller(
            f"checkpoint {source} has no pretraining heads ({', '.join(head_missing)}): they are "
            "initialised as Google's (truncated normal), not trained"
        )
    decoder = state.get("cls.predictions.decoder.weight")
    embedding = ours.get("bert.embeddings.word_embeddings.weight")
    if heads and decoder is not None and embedding is not None and not torch.equal(decoder, embedding):
        # transformers' tie_word_embeddings=False: a masked-LM decoder of its own, which this
        # BERT (Google's: output_weights = the embedding table) has no place for; read with the
        # embeddings instead, its fill-mask guesses would differ from transformers' without a word
        raise WeightsError(f"checkpoint {source}: cls.predictions.decoder.weight differs from the word embeddings "
                           "(saved with tie_word_embeddings false?); this BERT ties them, as Google's: not read")
    if other_unexpected:
        warn_at_caller(f"checkpoint {source}: skipped tensors this model has no place for: "
                       + ", ".join(other_unexpected))
    with torch.no_grad():
        for name, t in ours.items():
            target[name].copy_(t)


def read_hf_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a HF directory: ``model.safetensors`` (or its sharded index) or
    ``pytorch_model.bin`` (loaded weights-only: no pickled code runs)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise WeightsError(f"not a directory: {path}")
    st, index, pt = (os.path.join(path, n) for n in (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN))
    try:
        if os.path.exists(st):
            from safetensors.torch import load_file

            return load_file(st), st
        if os.path.exists(index):
            from safetensors.torch import load_file

            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(os.path.join(path, shard)))
            return state, index
        if os.path.exists(pt):
            try:
                state = torch.load(pt, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                raise WeightsError(f"refusing to read {pt}: besides tensors it holds Python objects, and "
                                   "unpickling them would run code the file names; save its state dict "
                                   "alone (model.state_dict(), or as model.safetensors)") from None
            others = ([str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
                      if isinstance(state, dict) else [])
            if not isinstance(state, dict) or others:
                raise WeightsError(f"{pt} does not hold a state dict of tensors"
                                   + (f" ({', '.join(others[:5])}: no tensor)" if others else ""))
            return state, pt
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
        if isinstance(e, WeightsError):
            raise
        raise WeightsError(f"cannot read weights in {path}: {e}") from None
    raise WeightsError(f"no {SAFETENSORS} or {PYTORCH_BIN} in {path}")


@dataclass
class Pretrained:
    """What ``read_pretrained`` found in a HF-format directory."""

    config: Any
    """The model's config (an instance of the ``config_class`` asked for)."""
    state: dict[str, torch.Tensor] = field(repr=False)
    """Its tensors by HF's names, floating point ones as float32."""
    source: str
    """The weights file they came from (for messages)."""
    hf_config: dict = field(default_factory=dict, repr=False)
    """``config.json`` as read (labels, architectures...); {} when the config was given."""


def read_pretrained(path: str | os.PathLike, config_class, config=None) -> Pretrained:
    """A HF-format directory's config (``config_class.from_json_file`` of its ``config.json``,
    unless ``config`` is given) and weights (``read_hf_weights``), for a model's ``from_pretrained``."""
    path = os.fspath(path)
    hf_config: dict = {}
    if config is None:
        config_file = os.path.join(path, CONFIG)
        if not os.path.exists(config_file):
            hint = ""
            if os.path.exists(os.path.join(path, "bert_config.json")):
                hint = " (a Google TF release? convert it first: bertdetr bert convert --tf-checkpoint DIR/bert_model.ckpt)"
            raise WeightsError(f"no {CONFIG} in {path}{hint}")
        hf_config = read_json_object(config_file)
        if "bbox_head" in hf_config or hf_config.get("model_type") == "detr":  # (ours, transformers')
            raise WeightsError(f"{path} holds a DETR checkpoint, not a BERT model (bertdetr.detr's init_detector "
                               "and pipeline read it)")
        config = config_class.from_json_file(config_file)
    state, source = read_hf_weights(path)
    return Pretrained(config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, source,
                      hf_config)


def pretrained_loader(load):
    """Wraps a model class's ``from_pretrained(cls, path, ...)`` (under ``@classmethod``) into
    transformers': the model comes back in eval mode (dropout off, so that two calls give the same
    outputs; training code calls ``.train()`` itself), cast to ``dtype`` (or the older
    ``torch_dtype``: torch.bfloat16/float16 or its name; float32, "auto" and None keep float32), and
    a ``path`` that is not a folder name is a TypeError naming it, not one from deep in ``os``."""

    @functools.wraps(load)
    def from_pretrained(cls, path, *args, dtype=None, torch_dtype=None, **kwargs):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{cls.__name__}.from_pretrained: path must be a folder (a str or os.PathLike), "
                            f"got {type(path).__name__} {path!r:.60}")
        cast = inference_dtype(dtype if dtype is not None else torch_dtype)
        model = load(cls, path, *args, **kwargs)
        if cast is not None:
            model.to(cast)
        return model.eval()

    return from_pretrained


def read_json_object(path: str) -> dict:
    """A JSON file's object ({} when it is missing, unreadable, or not an object)."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def read_labels(directory: str | os.PathLike | None, num_labels: int | None = None,
                hf_config: dict | None = None) -> list[str] | None:
    """A fine-tuned classifier's label names, in id order: ``id2label`` of ``hf_config`` or of the
    directory's ``config.json``. With ``num_labels`` every id gets a name (transformers' ``LABEL_i``
    where the config has none); without, None when the config names no labels (or is missing)."""
    if hf_config is None:
        hf_config = read_json_object(os.path.join(os.fspath(directory), CONFIG)) if directory else {}
    id2label = hf_config.get("id2label") or {}
    if not isinstance(id2label, dict):
        id2label = {}
    if num_labels is None:
        if not id2label:
            return None
        num_labels = len(id2label)
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(num_labels)]


def save_pretrained(model, path: str | os.PathLike, architecture: str) -> None:
    """Writes ``config.json`` and ``model.safetensors`` of a BertModel or BertForPreTraining with HF's
    names (each file atomically), ``architecture`` its HF class name.

    The tied decoder weight is not written (HF ties it on load, as its own save does)."""
    state = to_hf_state_dict({k: v.detach() for k, v in model.state_dict().items()}, model.config)
    write_hf_directory(path, state, model.config.to_hf_dict(architecture))


def write_hf_directory(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict) -> None:
    """``model.safetensors`` (HF-named ``state``) and ``config.json``, each written atomically, as
    transformers' ``save_pretrained`` lays them out."""
    from safetensors.torch import save

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    state = {k: v.contiguous().cpu() for k, v in state.items()}
    with atomic_output(os.path.join(path, SAFETENSORS)) as f:
        f.write(save(state, metadata={"format": "pt"}))
    with atomic_output(os.path.join(path, CONFIG), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


def export_model(model, path: str | os.PathLike, vocab_file: str | None, do_lower_case: bool) -> str:
    """A trained model as the directory every loader reads: ``model.save_pretrained(path)`` (HF's
    files), ``vocab.txt`` (a copy of ``vocab_file``, when given) and ``tokenizer_config.json``, as
    transformers' tokenizers read them. Returns ``path``."""
    path = os.fspath(path)
    model.save_pretrained(path)
    if vocab_file and os.fspath(vocab_file).endswith(".json"):  # a tokenizer.json's vocabulary, as vocab.txt
        from bertdetr.bert.data.tokenization import load_vocab

        with atomic_output(os.path.join(path, "vocab.txt"), "w") as f:
            f.writelines(token + "\n" for token in load_vocab(vocab_file))
    elif vocab_file:
        shutil.copyfile(vocab_file, os.path.join(path, "vocab.txt"))
    with atomic_output(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer"}, f, indent=1)
    return path


def saved_do_lower_case(directory: str | os.PathLike | None) -> bool | None:
    """The casing a model directory's tokenizer was saved with: ``do_lower_case`` of its
    tokenizer_config.json (as ``export_model`` and transformers write it), else its tokenizer.json's
    normalizer (a transformers 5 folder); None when it says nothing (or is no directory)."""
    if not directory or not os.path.isdir(directory):
        return None
    config = os.path.join(directory, "tokenizer_config.json")
    if os.path.isfile(config):
        found = read_json_object(config).get("do_lower_case")
        if isinstance(found, bool):
            return found
    if os.path.isfile(os.path.join(directory, "tokenizer.json")):
        from bertdetr.bert.data.tokenization import tokenizer_json_vocab

        return tokenizer_json_vocab(os.path.join(directory, "tokenizer.json"))[1]
    return None


# ---- Google's TensorFlow checkpoints ----------------------------------------------------------

# Variables that are optimizer state, not model: Adam slots, step counters, loss-scale state.
_TF_SKIP = re.compile(r"(adam_[mv]|global_step|good_steps|loss_scale|current_loss_scale)$")


def refuse_unhonoured_settings(model_dir: str, tokenizer: FullTokenizer) -> None:
    """Raises ``BertDetrError`` naming the setting where transformers' tokenizer of the folder
    (``tokenizer_config.json``, else ``tokenizer.json``'s normalizer; its added tokens) would give
    other tokens than Google's ``FullTokenizer`` here, which strips accents exactly when it
    lowercases, splits every CJK character, and knows its vocabulary's tokens only. Honouring them
    would mean another tokenizer; refusing keeps the tokens equal to transformers' where it loads."""
    config = read_json_object(os.path.join(model_dir, "tokenizer_config.json"))
    fast = read_json_object(os.path.join(model_dir, "tokenizer.json"))
    normalizer = fast.get("normalizer") if isinstance(fast.get("normalizer"), dict) else {}
    strip = config.get("strip_accents", normalizer.get("strip_accents"))
    if strip is not None and bool(strip) != tokenizer.do_lower_case:  # (None: as the lowercasing, Google's)
        raise BertDetrError(f"{model_dir}: its tokenizer has strip_accents={strip} with do_lower_case="
                            f"{tokenizer.do_lower_case}; Google's tokenizer here strips accents exactly when it "
                            "lowercases, so its tokens would differ from transformers': not read")
    if config.get("tokenize_chinese_chars", normalizer.get("handle_chinese_chars", True)) is False:
        raise BertDetrError(f"{model_dir}: its tokenizer has tokenize_chinese_chars=False; Google's tokenizer here "
                            "always splits CJK characters, so its tokens would differ from transformers': not read")
    decoder = config.get("added_tokens_decoder") if isinstance(config.get("added_tokens_decoder"), dict) else {}
    added = [*read_json_object(os.path.join(model_dir, "added_tokens.json")),
             *(t.get("content") for t in decoder.values() if isinstance(t, dict)),
             *(t.get("content") for t in fast.get("added_tokens") or [] if isinstance(t, dict))]
    missing = sorted({t for t in added if isinstance(t, str) and t not in tokenizer.vocab})
    if missing:
        raise BertDetrError(f"{model_dir}: its tokenizer has added tokens outside vocab.txt ({', '.join(missing[:5])}"
                            f"{', ...' if len(missing) > 5 else ''}: tokenizer.add_tokens); Google's tokenizer here "
                            "reads its vocabulary only: not read")


def google_to_hf_name(name: str) -> tuple[str, bool]:
    """A Google variable name -> (HF name, whether to transpose).

    ``bert/encoder/layer_3/attention/self/query/kernel`` -> ``bert.encoder.layer.3.attention.self.query.weight``
    (transposed: TF dense kernels are [in, out], torch weights [out, in]); LayerNorm ``gamma``/``beta``
    -> ``weight``/``bias``; embedding tables gain ``.weight``; ``cls/predictions/output_bias`` ->
    ``cls.predictions.bias``; ``cls/seq_relationship/output_weights`` is already [2, D] (Google
    multiplies it with ``transpose_b=True``), so it is not transposed.
    """
    if name in ("output_weights", "output_bias"):
        # run_classifier's create_model: top-level [K, D] weights (used with transpose_b) and bias,
        # HF's classifier.weight / classifier.bias.
        return "classifier." + ("weight" if name == "output_weights" else "bias"), False
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in name.split("/")]
    last = parts[-1]
    if last == "kernel":
        return ".".join(parts[:-1] + ["weight"]), True
    if last in ("gamma", "output_weights"):
        return ".".join(parts[:-1] + ["weight"]), False
    if last in ("beta", "output_bias"):
        return ".".join(parts[:-1] + ["bias"]), False
    if last.endswith("_embeddings"):
        return ".".join(parts + ["weight"]), False
    return ".".join(parts), False


def read_tf_checkpoint(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model variables of a Google TF checkpoint (``bert_model.ckpt`` prefix), HF-named.

    Needs TensorFlow (``pip install bertdetr[tf]``); optimizer slots are dropped."""
    try:
        import tensorflow as tf
    except ImportError:
        raise BertDetrError(
            "reading a TensorFlow checkpoint needs TensorFlow: pip install 'bertdetr[tf]'"
        ) from None
    checkpoint = os.fspath(checkpoint)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except (ValueError, tf.errors.OpError) as e:
        raise WeightsError(f"cannot read TF checkpoint {checkpoint}: {str(e).splitlines()[0]}") from None
    state: dict[str, torch.Tensor] = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        if _TF_SKIP.search(name):
            continue
        hf_name, transpose = google_to_hf_name(name)
        t = torch.from_numpy(reader.get_tensor(name).copy())
        state[hf_name] = t.t().contiguous() if transpose else t
    return state
