"""Every BERT class's ``from_pretrained`` as transformers': eval mode, ``dtype=``, a clear error for
a path that is not one; a CRF asked of a folder without one; inputs that are not tensors."""

import pytest
import torch

from bertdetr.bert.heads import (BertCrfForNer, BertForMultipleChoice, BertForQuestionAnswering,
                                 BertForSequenceClassification, BertForTokenClassification, BertSpanForNer)
from bertdetr.bert.model import BertConfig, BertForPreTraining, BertModel, build_bert_model
from bertdetr.bert.weights import WeightsError
from bertdetr.errors import BertDetrError

TAGS = ["O", "B-PER", "I-PER"]


def _bert(seed=0):
    torch.manual_seed(seed)
    # dropout well above 0, so that a model left in training mode gives two different outputs
    return build_bert_model(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=24, max_position_embeddings=16, hidden_dropout_prob=0.5,
                                       attention_probs_dropout_prob=0.5))


MAKERS = {
    BertModel: lambda: _bert(),
    BertForPreTraining: None,   # built below from its own builder
    BertForSequenceClassification: lambda: BertForSequenceClassification(_bert(), ["no", "yes"]),
    BertForTokenClassification: lambda: BertForTokenClassification(_bert(), TAGS),
    BertCrfForNer: lambda: BertCrfForNer(_bert(), TAGS),
    BertSpanForNer: lambda: BertSpanForNer(_bert(), ["O", "PER"]),
    BertForQuestionAnswering: lambda: BertForQuestionAnswering(_bert()),
    BertForMultipleChoice: lambda: BertForMultipleChoice(_bert(), 2),
}


def _make(cls):
    if cls is BertForPreTraining:
        from bertdetr.bert.model import build_bert_for_pretraining

        return build_bert_for_pretraining(_bert().config)
    return MAKERS[cls]()


def _run(model):
    ids = torch.tensor([[2, 5, 6, 7, 3]])
    if isinstance(model, BertModel):
        return model(ids).sequence_output
    if isinstance(model, BertForPreTraining):
        return next(iter(model(input_ids=ids, masked_lm_positions=torch.tensor([[1]])).values()))
    if isinstance(model, BertForMultipleChoice):
        return model(input_ids=ids[:, None].expand(1, 2, 5))["logits"]
    return next(iter(model(input_ids=ids).values()))


@pytest.mark.parametrize("cls", list(MAKERS), ids=lambda c: c.__name__)
def test_from_pretrained_returns_eval_mode_and_repeats(tmp_path, cls):
    _make(cls).save_pretrained(tmp_path)
    model = cls.from_pretrained(tmp_path)
    assert model.training is False
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(_run(model), _run(model), rtol=0, atol=0)


def test_from_pretrained_casts_to_dtype(tmp_path):
    _bert().save_pretrained(tmp_path)
    assert BertModel.from_pretrained(tmp_path, dtype=torch.bfloat16).embeddings.word_embeddings.weight.dtype \
        == torch.bfloat16
    assert BertModel.from_pretrained(tmp_path, torch_dtype="float16").pooler.dense.weight.dtype == torch.float16
    assert BertModel.from_pretrained(tmp_path, dtype="auto").pooler.dense.weight.dtype == torch.float32
    with pytest.raises(BertDetrError, match="dtype must be"):
        BertModel.from_pretrained(tmp_path, dtype=torch.int8)


@pytest.mark.parametrize("cls", [BertModel, BertForTokenClassification, BertForMultipleChoice],
                         ids=lambda c: c.__name__)
def test_from_pretrained_of_no_path_is_a_clear_type_error(cls):
    with pytest.raises(TypeError, match=rf"{cls.__name__}.from_pretrained: path must be a folder.*NoneType"):
        cls.from_pretrained(None)


def test_crf_of_a_folder_without_one_is_refused(tmp_path):
    BertForTokenClassification(_bert(), TAGS).save_pretrained(tmp_path / "plain")
    with pytest.raises(WeightsError, match=r"has no CRF .*crf.transitions.*not a BertCrfForNer"):
        BertCrfForNer.from_pretrained(tmp_path / "plain")
    crf = BertCrfForNer(_bert(), TAGS)
    with torch.no_grad():
        crf.crf.transitions.fill_(0.25)
    crf.save_pretrained(tmp_path / "crf")
    # a folder with a CRF still loads as one by either class, its transitions its own
    for cls in (BertCrfForNer, BertForTokenClassification):
        loaded = cls.from_pretrained(tmp_path / "crf")
        assert type(loaded) is BertCrfForNer
        assert torch.equal(loaded.crf.transitions, crf.crf.transitions)


def test_a_list_of_ids_is_a_type_error_naming_it():
    model = _bert().eval()
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor.*got list"):
        model([[2, 5, 3]])
    with pytest.raises(TypeError, match="attention_mask must be a torch.Tensor.*got list"):
        model(torch.tensor([[2, 5, 3]]), attention_mask=[[1, 1, 1]])
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        BertForSequenceClassification(_bert(), ["no", "yes"])(input_ids=[[2, 5, 3]])
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        BertForMultipleChoice(_bert(), 2)(input_ids=[[[2, 5, 3]] * 2])


def test_loading_warnings_point_at_the_callers_line(tmp_path):
    """What from_pretrained warns about (here: a BertModel folder without pretraining heads) is
    attributed to the user's line, not to the library's wrapper (Python 3.12's skip_file_prefixes)."""
    import sys
    import warnings

    _bert().save_pretrained(tmp_path / "bare")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        BertForPreTraining.from_pretrained(tmp_path / "bare")
    assert caught and all("no pretraining heads" in str(w.message) or "no pooler" in str(w.message) for w in caught)
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}


@pytest.mark.parametrize("cls, match", [
    (BertForTokenClassification, "is a token classifier .*BertForTokenClassification"),
    (BertCrfForNer, "is a token classifier"),
    (BertSpanForNer, "is a BertSpanForNer"),
    (BertForMultipleChoice, "is a BertForMultipleChoice, not a BertForSequenceClassification"),
])
def test_a_sentence_classifier_is_not_read_from_another_heads_folder(tmp_path, cls, match):
    """transformers' token and multiple-choice heads share the name classifier.*: their folders
    would load as a sentence classifier of their shape (a text labelled I-LOC); refused, naming them."""
    MAKERS[cls]().save_pretrained(tmp_path / "other")
    with pytest.raises(WeightsError, match=match):
        BertForSequenceClassification.from_pretrained(tmp_path / "other")


def test_a_transformers_multiple_choice_folder_is_not_a_sentence_classifier(tmp_path):
    import transformers

    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=16)
    transformers.BertForMultipleChoice(config).save_pretrained(tmp_path / "mc")
    with pytest.raises(WeightsError, match="is a BertForMultipleChoice"):
        BertForSequenceClassification.from_pretrained(tmp_path / "mc")
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path / "sc")
    assert BertForSequenceClassification.from_pretrained(tmp_path / "sc").num_labels == 2


def test_an_untied_masked_lm_decoder_is_refused_not_replaced(tmp_path):
    """transformers' BertForMaskedLM with tie_word_embeddings=False has a decoder of its own; read
    with the embeddings in its place, fill-mask would guess otherwise than transformers: refused."""
    import transformers

    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=16, tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(tmp_path / "untied")
    with pytest.raises(WeightsError, match="decoder.weight differs from the word embeddings"):
        BertForPreTraining.from_pretrained(tmp_path / "untied")
    transformers.BertForMaskedLM(transformers.BertConfig(**{**config.to_dict(), "tie_word_embeddings": True})) \
        .save_pretrained(tmp_path / "tied")
    BertForPreTraining.from_pretrained(tmp_path / "tied")
