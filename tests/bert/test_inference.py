"""``load_tokenizer`` on folders transformers' ``BertTokenizerFast`` saved: the settings it honours
give transformers' tokens; those it cannot (accents stripped otherwise than the casing, CJK
characters not split, added tokens) refuse the folder, naming the setting."""

import shutil

import pytest

from bertdetr.bert.inference import load_tokenizer
from bertdetr.errors import BertDetrError
from tests.conftest import DATA

transformers = pytest.importorskip("transformers")

VOCAB = DATA / "bert" / "vocab-uncased.txt"
TEXT = "Héllo naïve CAFÉ 北京欢迎你 résumé"


def _saved(tmp_path, with_vocab_txt=False, **settings):
    tokenizer = transformers.BertTokenizerFast(str(VOCAB), **settings)
    tokenizer.save_pretrained(tmp_path)
    if with_vocab_txt:   # as transformers 4 saves it: vocab.txt beside tokenizer.json
        shutil.copyfile(VOCAB, tmp_path / "vocab.txt")
    return tokenizer


@pytest.mark.parametrize("settings", [dict(do_lower_case=True), dict(do_lower_case=False),
                                      dict(do_lower_case=True, strip_accents=True),
                                      dict(do_lower_case=False, strip_accents=False)], ids=str)
@pytest.mark.parametrize("with_vocab_txt", [False, True], ids=["tokenizer.json", "vocab.txt"])
def test_the_settings_honoured_give_transformers_tokens(tmp_path, settings, with_vocab_txt):
    theirs = _saved(tmp_path, with_vocab_txt, **settings)
    assert load_tokenizer(tmp_path).tokenize(TEXT) == theirs.tokenize(TEXT)


@pytest.mark.parametrize("settings, match", [
    (dict(do_lower_case=True, strip_accents=False), "strip_accents=False with do_lower_case=True"),
    (dict(do_lower_case=False, strip_accents=True), "strip_accents=True with do_lower_case=False"),
    (dict(do_lower_case=True, tokenize_chinese_chars=False), "tokenize_chinese_chars=False"),
], ids=["lower-keep-accents", "cased-strip-accents", "chinese"])
@pytest.mark.parametrize("with_vocab_txt", [False, True], ids=["tokenizer.json", "vocab.txt"])
def test_settings_not_honoured_are_refused(tmp_path, settings, match, with_vocab_txt):
    theirs = _saved(tmp_path, with_vocab_txt, **settings)
    assert theirs.tokenize(TEXT) != transformers.BertTokenizerFast(str(VOCAB)).tokenize(TEXT)  # they do differ
    with pytest.raises(BertDetrError, match=match):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("with_vocab_txt", [False, True], ids=["tokenizer.json", "vocab.txt"])
def test_added_tokens_are_refused(tmp_path, with_vocab_txt):
    tokenizer = transformers.BertTokenizerFast(str(VOCAB))
    tokenizer.add_tokens(["newword", "otherword"])
    tokenizer.save_pretrained(tmp_path)
    if with_vocab_txt:
        shutil.copyfile(VOCAB, tmp_path / "vocab.txt")
    with pytest.raises(BertDetrError, match=r"added tokens outside vocab.txt \(newword, otherword: tokenizer.add_tokens\)"):
        load_tokenizer(tmp_path)
