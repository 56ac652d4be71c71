"""The task heads' weight files: transformers' head classes' layouts (``BertForSequenceClassification``,
``BertForQuestionAnswering``, ``BertForTokenClassification``, ``BertForMultipleChoice``), Google's
fine-tuned heads' names, and CLUENER2020's BERT+CRF checkpoints. What ``bert/heads.py``'s
``from_pretrained``/``save_pretrained`` and the fine-tuning programs call; built on the encoder's
machinery in ``bertdetr.bert.weights`` (strict about the encoder, a head loaded when the checkpoint
is that head), and, as it, importing no model.
"""

from __future__ import annotations

import os

import torch

from bertdetr.bert.weights import (SAFETENSORS, WeightsError, load_state_into, read_hf_weights, read_labels,
                                   to_hf_state_dict, write_hf_directory)
from bertdetr.errors import warn_at_caller


# ---- sequence classifiers (Google's run_classifier, HF's BertForSequenceClassification) -------

CLASSIFIER_WEIGHT, CLASSIFIER_BIAS = "classifier.weight", "classifier.bias"


def load_classifier_state(model, state: dict[str, torch.Tensor], source: str) -> bool:
    """Loads HF-named ``state`` into a ``BertForSequenceClassification``: the encoder as
    ``load_state_into`` (strict; a missing pooler is initialised with a warning), and the head
    (``classifier.*``) when the checkpoint has one. Returns whether it had one; a head for another
    number of labels is an error."""
    return _load_encoder_and_head(
        model, state, source, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS,
        lambda w: f"checkpoint {source} has a classifier for {w.shape[0]} labels, the task has "
                  f"{model.num_labels} ({', '.join(model.labels)})")


def other_head_of(hf_config: dict, state) -> str | None:
    """What a checkpoint with ``classifier.*`` is when not a sentence classifier (None when it may
    be one): transformers' token and multiple-choice heads share those names, so their weights
    would load as a sentence classifier of their shape and label texts with tags. Told by the
    tensors (a CRF, a span head) and the config's ``architectures`` (none: taken as one)."""
    if SPAN_START_WEIGHT in state:
        return "a BertSpanForNer (bert ner --span; load it with BertSpanForNer)"
    if is_token_classifier(hf_config, state):
        return "a token classifier (bert ner; load it with BertForTokenClassification)"
    architectures = hf_config.get("architectures") or []
    if architectures and "BertForSequenceClassification" not in architectures:
        return f"a {architectures[0]}"
    return None


def save_sequence_classifier(model, path: str | os.PathLike) -> None:
    """Writes ``config.json`` (with ``id2label``/``label2id``) and ``model.safetensors`` as
    transformers' ``BertForSequenceClassification.save_pretrained`` (each file atomically)."""
    _save_encoder_and_head(model, path, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS, "BertForSequenceClassification",
                           {"id2label": {str(i): label for i, label in enumerate(model.labels)},
                            "label2id": {label: i for i, label in enumerate(model.labels)}})


def _load_encoder_and_head(model, state: dict[str, torch.Tensor], source: str, weight_name: str, bias_name: str,
                           mismatch) -> bool:
    """What both heads' loaders do: the encoder (``model.bert``) as ``load_state_into``, then the
    head's ``output_weights``/``output_bias`` from ``weight_name``/``bias_name`` when the checkpoint
    has them (another shape: ``WeightsError(mismatch(weight))``). Returns whether it had them."""
    state = dict(state)
    weight, bias = state.pop(weight_name, None), state.pop(bias_name, None)
    load_state_into(model.bert, state, source, heads=False)
    if weight is None or bias is None:
        return False
    if tuple(weight.shape) != tuple(model.output_weights.shape) or tuple(bias.shape) != tuple(model.output_bias.shape):
        raise WeightsError(mismatch(weight))
    with torch.no_grad():
        model.output_weights.copy_(weight.float())
        model.output_bias.copy_(bias.float())
    return True


def _save_encoder_and_head(model, path: str | os.PathLike, weight_name: str, bias_name: str, architecture: str,
                           extra_config: dict | None = None, without: tuple[str, ...] = (),
                           extra_state: dict[str, torch.Tensor] | None = None) -> None:
    """What both heads' savers do: the encoder under ``bert.`` (less ``without``), the head as
    ``weight_name``/``bias_name`` (plus ``extra_state``), and the config of HF's ``architecture``
    (plus ``extra_config``)."""
    body = to_hf_state_dict({k: v.detach() for k, v in model.bert.state_dict().items()}, model.config)
    state = {"bert." + k: v for k, v in body.items() if k not in without}
    state[weight_name] = model.output_weights.detach()
    state[bias_name] = model.output_bias.detach()
    state.update(extra_state or {})
    write_hf_directory(path, state, {**model.config.to_hf_dict(architecture), **(extra_config or {})})


# ---- question answering (Google's run_squad, HF's BertForQuestionAnswering) -------------------

SQUAD_WEIGHT, SQUAD_BIAS = "qa_outputs.weight", "qa_outputs.bias"
# Google's cls/squad/output_weights [2, D] (used with transpose_b, so already torch's layout) and
# cls/squad/output_bias, as google_to_hf_name names them, -> HF's qa_outputs.
GOOGLE_SQUAD_NAMES = {"cls.squad.weight": SQUAD_WEIGHT, "cls.squad.bias": SQUAD_BIAS}
_POOLER = ("pooler.dense.weight", "pooler.dense.bias")


def load_question_answering_state(model, state: dict[str, torch.Tensor], source: str) -> bool:
    """Loads HF-named ``state`` (or Google's ``cls.squad.*``) into a ``BertForQuestionAnswering``:
    the encoder as ``load_state_into`` (strict), the span head when the checkpoint has one.
    Returns whether it had one.

    HF's BertForQuestionAnswering has no pooler (``add_pooling_layer=False``) and the span head
    never reads it: a missing pooler keeps the model's own, silently."""
    state = {GOOGLE_SQUAD_NAMES.get(k, k): v for k, v in state.items()}
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for name in _POOLER:
        state.setdefault(prefix + name, model.bert.state_dict()[name].detach().clone())
    return _load_encoder_and_head(
        model, state, source, SQUAD_WEIGHT, SQUAD_BIAS,
        lambda w: f"checkpoint {source}: {SQUAD_WEIGHT} has shape {list(w.shape)}, a span head for hidden size "
                  f"{model.config.hidden_size} needs {list(model.output_weights.shape)}")


def save_question_answering(model, path: str | os.PathLike) -> None:
    """Writes ``config.json`` and ``model.safetensors`` as transformers'
    ``BertForQuestionAnswering.save_pretrained`` does (``bert.*`` without the pooler, which it does
    not have, and ``qa_outputs.*``), each file atomically."""
    _save_encoder_and_head(model, path, SQUAD_WEIGHT, SQUAD_BIAS, "BertForQuestionAnswering", without=_POOLER)


# ---- token classification (HF's BertForTokenClassification; Google has no NER program) ---------


def load_token_classifier_state(model, state: dict[str, torch.Tensor], source: str, hf_config: dict | None) -> bool:
    """Loads HF-named ``state`` into a ``BertForTokenClassification``: the encoder as
    ``load_state_into`` (strict), the head (``classifier.*``) when the checkpoint is a token
    classifier (``hf_config``'s ``architectures``: a sentence classifier's ``classifier.*`` has
    the same names, and is not loaded as a token head). Returns whether the head was loaded. A
    ``BertCrfForNer`` (with a ``crf``) loads the checkpoint's CRF with its head when it has one (else
    keeps its own); a model without one leaves a checkpoint's CRF out.

    transformers' BertForTokenClassification has no pooler (``add_pooling_layer=False``), which the
    head never reads: a missing pooler keeps the model's own, silently."""
    state = dict(state)
    crf = {name: state.pop(name) for name in CRF_NAMES if name in state}
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for name in _POOLER:
        state.setdefault(prefix + name, model.bert.state_dict()[name].detach().clone())
    if not crf and not is_clueners(hf_config):  # (CLUENER's configs name no architecture: its weights say)
        _keep_classifier_of(state, hf_config, "BertForTokenClassification")
    loaded = _load_encoder_and_head(
        model, state, source, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS,
        lambda w: f"checkpoint {source} has a token classifier for {w.shape[0]} labels, the task has "
                  f"{model.num_labels} ({', '.join(model.labels)})")
    if loaded and crf and getattr(model, "crf", None) is not None:
        if len(crf) != len(CRF_NAMES):
            raise WeightsError(f"checkpoint {source} has {sorted(crf)} of a CRF, not all of {list(CRF_NAMES)}")
        with torch.no_grad():  # (the shapes follow the classifier's, checked above)
            for name, value in crf.items():
                getattr(model.crf, name.split(".", 1)[1]).copy_(value.float())
    return loaded


CRF_NAMES = ("crf.start_transitions", "crf.end_transitions", "crf.transitions")
"""A ``BertCrfForNer``'s CRF in its directory, as CLUENER2020's ``BertCrfForNer`` names them."""


def has_crf(state) -> bool:
    """Whether a token classifier's weights (a state dict, or the names of its tensors) hold a CRF
    (saved by ``bert ner --crf``, or CLUENER2020's ``BertCrfForNer``)."""
    return CRF_NAMES[-1] in state


def hf_weight_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The shape of each of a HF directory's tensors by name, without reading the tensors where it
    has ``model.safetensors`` (else as ``read_hf_weights``)."""
    st = os.path.join(os.fspath(path), SAFETENSORS)
    if os.path.exists(st):
        from safetensors import safe_open

        with safe_open(st, "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return {k: tuple(v.shape) for k, v in read_hf_weights(path)[0].items()}


def is_clueners(hf_config: dict | None) -> bool:
    """Whether a config is one CLUENER2020's NER baselines saved: no architectures (its early
    transformers wrote none) and its ``loss_type``, which its ``run_ner_*.py`` add to the config."""
    return bool(hf_config) and "loss_type" in hf_config and not hf_config.get("architectures")


def is_token_classifier(hf_config: dict | None, shapes) -> bool:
    """Whether a checkpoint (its config and its tensors or their shapes, by name) is a token
    classifier: transformers' ``BertForTokenClassification`` by its config, a classifier with a
    CRF beside it (ours, or CLUENER2020's ``BertCrfForNer``), or a classifier of CLUENER's
    ``BertSoftmaxForNer`` (``is_clueners``; its config names no architecture)."""
    return CLASSIFIER_WEIGHT in shapes and (
        "BertForTokenClassification" in ((hf_config or {}).get("architectures") or []) or has_crf(shapes)
        or is_clueners(hf_config))


CLUENER_LABELS = (
    ["X", "B-address", "B-book", "B-company", "B-game", "B-government", "B-movie", "B-name", "B-organization",
     "B-position", "B-scene", "I-address", "I-book", "I-company", "I-game", "I-government", "I-movie", "I-name",
     "I-organization", "I-position", "I-scene", "S-address", "S-book", "S-company", "S-game", "S-government",
     "S-movie", "S-name", "S-organization", "S-position", "S-scene", "O", "[START]", "[END]"],
    ["X", "B-CONT", "B-EDU", "B-LOC", "B-NAME", "B-ORG", "B-PRO", "B-RACE", "B-TITLE", "I-CONT", "I-EDU", "I-LOC",
     "I-NAME", "I-ORG", "I-PRO", "I-RACE", "I-TITLE", "O", "S-NAME", "S-ORG", "S-RACE", "[START]", "[END]"])
"""The tag lists of CLUENER2020's BERT+CRF and BERT+softmax baselines (``ner_seq.py``'s
``CluenerProcessor.get_labels()``: CLUENER's ten types; ``CnerProcessor``'s: ResumeNER's eight), in
its id order. Its checkpoints name no tags (the config has ``num_labels`` alone): one with a CRF or
CLUENER's config, without names, of one of these lengths, was made with it."""


def token_classifier_labels(directory: str | os.PathLike, hf_config: dict | None, shapes) -> list[str]:
    """The tags of a token classifier checkpoint in id order (``read_labels``); one of CLUENER's
    BERT+CRF or BERT+softmax baselines (a CRF or CLUENER's config, no tag names, the length of a
    ``CLUENER_LABELS`` list) gets that list, with a warning saying so."""
    num_labels = shapes[CLASSIFIER_WEIGHT][0] if isinstance(shapes[CLASSIFIER_WEIGHT], tuple) \
        else shapes[CLASSIFIER_WEIGHT].shape[0]
    named = read_labels(directory, None, hf_config)
    if named is None and (has_crf(shapes) or is_clueners(hf_config)):
        for labels in CLUENER_LABELS:
            if len(labels) == num_labels:
                kind = "BERT+CRF" if has_crf(shapes) else "BERT+softmax"
                warn_at_caller(f"{directory} names no tags: read as CLUENER2020's {kind} checkpoint, whose "
                               f"{num_labels} tags are its processor's ({', '.join(labels[1:4])}, ...)")
                return list(labels)
    return read_labels(directory, num_labels, hf_config)


def _keep_classifier_of(state: dict[str, torch.Tensor], hf_config: dict | None, architecture: str) -> None:
    """Drops ``classifier.*`` from ``state`` unless ``hf_config`` says the checkpoint is an
    ``architecture``: transformers' heads share those names (a sentence classifier's would load
    as another head of the same shape)."""
    if architecture not in ((hf_config or {}).get("architectures") or []):
        state.pop(CLASSIFIER_WEIGHT, None)
        state.pop(CLASSIFIER_BIAS, None)


def save_token_classifier(model, path: str | os.PathLike) -> None:
    """Writes ``config.json`` (with ``id2label``/``label2id``) and ``model.safetensors`` as
    transformers' ``BertForTokenClassification.save_pretrained`` (``bert.*`` without the pooler,
    ``classifier.*``; a ``BertCrfForNer`` adds its ``CRF_NAMES``, which transformers leaves unread),
    each file atomically."""
    crf = getattr(model, "crf", None)
    _save_encoder_and_head(model, path, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS, "BertForTokenClassification",
                           {"id2label": {str(i): label for i, label in enumerate(model.labels)},
                            "label2id": {label: i for i, label in enumerate(model.labels)}}, without=_POOLER,
                           extra_state={} if crf is None else {
                               name: getattr(crf, name.split(".", 1)[1]).detach() for name in CRF_NAMES})


# ---- multiple choice (HF's BertForMultipleChoice; CLUE's C3 baseline) ---------------------------


def load_multiple_choice_state(model, state: dict[str, torch.Tensor], source: str, hf_config: dict | None) -> bool:
    """Loads HF-named ``state`` into a ``BertForMultipleChoice``: the encoder as
    ``load_state_into`` (strict; a missing pooler is initialised with a warning), the head
    (``classifier.*``, [1, D]) when the checkpoint is a multiple-choice model (``hf_config``'s
    ``architectures``: a one-label sentence classifier has the same names and shapes, and is not
    loaded as this head). Returns whether the head was loaded."""
    state = dict(state)
    _keep_classifier_of(state, hf_config, "BertForMultipleChoice")
    return _load_encoder_and_head(
        model, state, source, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS,
        lambda w: f"checkpoint {source}: {CLASSIFIER_WEIGHT} has shape {list(w.shape)}, a multiple-choice head for "
                  f"hidden size {model.config.hidden_size} needs {list(model.output_weights.shape)}")


def save_multiple_choice(model, path: str | os.PathLike) -> None:
    """Writes ``config.json`` and ``model.safetensors`` as transformers'
    ``BertForMultipleChoice.save_pretrained`` (``bert.*`` with the pooler, ``classifier.*``), each
    file atomically."""
    _save_encoder_and_head(model, path, CLASSIFIER_WEIGHT, CLASSIFIER_BIAS, "BertForMultipleChoice")


# ---- span pointers (CLUENER2020's BertSpanForNer) --------------------------------------------------

SPAN_START_WEIGHT = "start_fc.dense.weight"
SPAN_NAMES = ("start_fc.dense.weight", "start_fc.dense.bias", "end_fc.dense_0.weight", "end_fc.dense_0.bias",
              "end_fc.LayerNorm.weight", "end_fc.LayerNorm.bias", "end_fc.dense_1.weight", "end_fc.dense_1.bias")
"""A ``BertSpanForNer``'s head, as CLUENER2020's model names its tensors."""
CLUENER_SPECIAL_TAGS = ("X", "[START]", "[END]")
"""The tags of ``CLUENER_LABELS`` that tag no entity (its ``get_entity_bios`` reads ``B-``, ``I-``
and ``S-`` only): a pipeline of such a model leaves them out by default, as it does ``O``."""


CLUENER_SPAN_LABELS = ["O", "address", "book", "company", "game", "government", "movie", "name", "organization",
                       "position", "scene"]
"""CLUENER's span labels (``ner_span.py``'s ``CluenerProcessor.get_labels()``), in its id order; its
checkpoints name none."""


def span_labels(directory: str | os.PathLike, hf_config: dict | None, shapes) -> list[str]:
    """The span labels of a ``BertSpanForNer`` checkpoint in id order: its ``id2label``; one of
    CLUENER's (no names, its 11) gets ``CLUENER_SPAN_LABELS``, with a warning."""
    num_labels = tuple(shapes[SPAN_START_WEIGHT].shape if hasattr(shapes[SPAN_START_WEIGHT], "shape")
                       else shapes[SPAN_START_WEIGHT])[0]
    if read_labels(directory, None, hf_config) is None and num_labels == len(CLUENER_SPAN_LABELS):
        warn_at_caller(f"{directory} names no labels: read as CLUENER2020's BERT+Span checkpoint, whose "
                       f"{num_labels} labels are its processor's (O, address, book, ...)")
        return list(CLUENER_SPAN_LABELS)
    return read_labels(directory, num_labels, hf_config)


def load_span_state(model, state: dict[str, torch.Tensor], source: str) -> bool:
    """Loads HF-named ``state`` into a ``BertSpanForNer``: the encoder as ``load_state_into``
    (strict; a missing pooler keeps the model's own: the head never reads it), the span head when
    the checkpoint has one (another number of labels: an error). Returns whether it had one."""
    state = dict(state)
    head = {name: state.pop(name) for name in SPAN_NAMES if name in state}
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "crf."))}
    prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
    for name in _POOLER:
        state.setdefault(prefix + name, model.bert.state_dict()[name].detach().clone())
    load_state_into(model.bert, state, source, heads=False)
    if not head:
        return False
    if len(head) != len(SPAN_NAMES):
        raise WeightsError(f"checkpoint {source} has {sorted(head)} of a span head, not all of {list(SPAN_NAMES)}")
    own = dict(model.named_parameters())
    for name, value in head.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise WeightsError(f"checkpoint {source}: {name} has shape {list(value.shape)}, the model's is "
                               f"{list(own[name].shape)} ({model.num_labels} labels: {', '.join(model.labels)})")
    with torch.no_grad():
        for name, value in head.items():
            own[name].copy_(value.float())
    return True


def save_span_classifier(model, path: str | os.PathLike) -> None:
    """Writes ``config.json`` (``id2label``, architectures ``BertSpanForNer``) and
    ``model.safetensors`` (``bert.*`` without the pooler, the head under CLUENER's names), each file
    atomically."""
    body = to_hf_state_dict({k: v.detach() for k, v in model.bert.state_dict().items()}, model.config)
    state = {"bert." + k: v for k, v in body.items() if k not in _POOLER}
    own = dict(model.named_parameters())
    state.update({name: own[name].detach() for name in SPAN_NAMES})
    write_hf_directory(path, state, {**model.config.to_hf_dict("BertSpanForNer"),
                                     "id2label": {str(i): label for i, label in enumerate(model.labels)},
                                     "label2id": {label: i for i, label in enumerate(model.labels)}})
