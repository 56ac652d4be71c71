import json

import pytest

from bertdetr.bert import tokenization
from bertdetr.bert.tokenization import FullTokenizer, VocabError, load_vocab


def _golden(data_dir, case):
    with open(data_dir / "bert" / f"tokenize-{case}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("case,lower", [("uncased", True), ("cased", False)])
def test_matches_google_token_for_token(data_dir, case, lower):
    tok = FullTokenizer(data_dir / "bert" / "vocab-uncased.txt", do_lower_case=lower)
    golden = _golden(data_dir, case)
    assert len(golden) > 50
    for record in golden:
        tokens = tok.tokenize(record["text"])
        assert tokens == record["tokens"], record["text"]
        assert tok.convert_tokens_to_ids(tokens) == record["ids"]
        assert tok.convert_ids_to_tokens(record["ids"]) == record["tokens"]


def test_bytes_decoded_as_utf8_ignoring_errors(data_dir):
    tok = FullTokenizer(data_dir / "bert" / "vocab-uncased.txt")
    assert tok.tokenize(b"caf\xc3\xa9 \xff\xfebad") == tok.tokenize("café bad")


def test_vocab_layout_of_bert_base(data_dir):
    vocab = load_vocab(data_dir / "bert" / "vocab-uncased.txt")
    assert len(vocab) == 30522
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]


def test_missing_vocab_file(tmp_path):
    with pytest.raises(VocabError, match="not found"):
        FullTokenizer(tmp_path / "nope.txt")


def test_empty_vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("")
    with pytest.raises(VocabError, match="empty"):
        load_vocab(path)


def test_duplicate_vocab_entry(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nthe\nof\nthe\n")
    with pytest.raises(VocabError, match=r"duplicate entry 'the' on lines 3 and 5"):
        load_vocab(path)


def test_vocab_without_unk(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\nthe\n")
    with pytest.raises(VocabError, match=r"no \[UNK\]"):
        load_vocab(path)


def test_google_module_names_exist():
    for name in ("FullTokenizer", "BasicTokenizer", "WordpieceTokenizer", "load_vocab",
                 "convert_to_unicode", "printable_text", "convert_by_vocab", "whitespace_tokenize"):
        assert hasattr(tokenization, name)
