import pytest

from bertdetr.bert.data.tokenization import FullTokenizer, load_vocab
from bertdetr.bert.data.vocab import VocabConfig, build_vocab
from bertdetr.cli import main
from bertdetr.demo import bundled_corpus
from bertdetr.errors import BertDetrError


def test_google_layout_and_loads(tmp_path):
    out = tmp_path / "vocab.txt"
    tokens = build_vocab([bundled_corpus()], out, VocabConfig(vocab_size=400, num_unused=5))
    assert tokens[:10] == ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[unused3]", "[unused4]",
                           "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(tokens) == 400
    vocab = load_vocab(out)
    assert list(vocab) == tokens
    # Every word of the corpus splits into pieces: the alphabet is in the vocab, with ## forms.
    tok = FullTokenizer(out)
    with open(bundled_corpus(), encoding="utf-8") as f:
        pieces = [p for line in f for p in tok.tokenize(line)]
    assert pieces and "[UNK]" not in pieces
    assert any(p.startswith("##") for p in pieces)


def test_cased_keeps_case(tmp_path):
    out = tmp_path / "vocab.txt"
    tokens = build_vocab([bundled_corpus()], out, VocabConfig(vocab_size=400, do_lower_case=False))
    assert any(t[:1].isupper() for t in tokens[104:])
    lower = build_vocab([bundled_corpus()], tmp_path / "l.txt", VocabConfig(vocab_size=400))
    assert not any(t[:1].isupper() for t in lower[104:])


def test_cli_build_vocab(tmp_path, capsys):
    out = tmp_path / "sub" / "vocab.txt"
    assert main(["bert", "build-vocab", "--input_file", bundled_corpus(), "--vocab-size", "300",
                 "--output", str(out), "--num-unused", "3"]) == 0
    assert load_vocab(out)["[UNK]"] == 4
    assert "300 entries" in capsys.readouterr().out


def test_cli_missing_input_is_clear_error(tmp_path, capsys):
    assert main(["bert", "build-vocab", "--input-file", str(tmp_path / "none*.txt"),
                 "--output", str(tmp_path / "v.txt")]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert not (tmp_path / "v.txt").exists()


def test_too_small_vocab_size():
    with pytest.raises(BertDetrError, match="too small"):
        VocabConfig(vocab_size=50, num_unused=99)


def test_same_vocab_on_every_run(tmp_path):
    # tokenizers' own WordPieceTrainer breaks ties in random hash order; ours must not.
    from bertdetr.demo import bundled_books

    runs = [build_vocab([bundled_books()], tmp_path / f"v{i}.txt", VocabConfig(vocab_size=1200, num_unused=3))
            for i in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) == 1200


def test_alphabet_larger_than_vocab_is_clear_error(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(chr(c) * 3 for c in range(0x3B1, 0x3C9)) + "\n")  # 24 Greek letters
    with pytest.raises(BertDetrError, match="too small for this corpus"):
        build_vocab([str(corpus)], tmp_path / "v.txt", VocabConfig(vocab_size=40, num_unused=0, min_frequency=1))
