import pytest

from bertdetr.bert.data.tokenization import FullTokenizer, load_vocab
from bertdetr.bert.data.vocab import VocabConfig, build_vocab
from bertdetr.cli import main
from bertdetr.demo import bundled_corpus
from bertdetr.errors import BertDetrError


def test_google_layout_and_loads(tmp_path):
    out = tmp_path / "vocab.txt"
    tokens = build_vocab([bundled_corpus()], out, VocabConfig(vocab_size=400, num_unused=5, min_frequency=1))
    assert tokens[:10] == ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[unused3]", "[unused4]",
                           "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(tokens) == 400
    vocab = load_vocab(out)
    assert list(vocab) == tokens
    # Every word of the corpus splits into pieces: every character seen (min_frequency 1) is in the
    # vocab, with its ## form.
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
    with pytest.raises(BertDetrError, match="too small for this corpus: at least 53 entries, as its 24 characters"):
        build_vocab([str(corpus)], tmp_path / "v.txt", VocabConfig(vocab_size=40, num_unused=0, min_frequency=1))
    # the minimum said is the minimum (it counted the characters' pieces only, not the specials)
    build_vocab([str(corpus)], tmp_path / "v.txt", VocabConfig(vocab_size=53, num_unused=0, min_frequency=1))


def _chinese_corpus(path, num_chars=1500, rare="\u9f98"):
    """Sentences of ``num_chars`` distinct Chinese characters (each seen at least twice; more than the
    1000 the vocabulary used to keep), some English words, and one character seen once."""
    import random

    rng = random.Random(0)
    chars = [chr(0x4E00 + i) for i in range(num_chars)]
    lines = []
    for _ in range(3):
        rng.shuffle(chars)
        for i in range(0, len(chars), 30):
            lines.append("".join(chars[i:i + 30]) + "，hello world。")
    lines.append(f"只有一次：{rare}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return chars


def test_every_chinese_character_seen_twice_is_kept(tmp_path):
    corpus = tmp_path / "zh.txt"
    chars = _chinese_corpus(corpus)
    out = tmp_path / "vocab.txt"
    tokens = build_vocab([str(corpus)], out, VocabConfig(vocab_size=3000, num_unused=5))
    vocab = set(tokens)
    assert all(c in vocab for c in chars)
    # a Chinese character is always a word of its own: no ## form (which could never be used)
    assert not any(t.startswith("##") and len(t) == 3 and "\u4e00" <= t[2] <= "\u9fff" for t in tokens)
    assert "##l" in vocab and "h" in vocab  # other characters in both forms
    tok = FullTokenizer(out)
    pieces = tok.tokenize(corpus.read_text(encoding="utf-8").splitlines()[0])
    assert "[UNK]" not in pieces and len([p for p in pieces if "\u4e00" <= p[0] <= "\u9fff"]) == 30
    # seen once (fewer than --min-frequency 2): not kept, [UNK]
    assert "\u9f98" not in vocab and tok.tokenize("\u9f98") == ["[UNK]"]
    assert "\u9f98" in build_vocab([str(corpus)], tmp_path / "v1.txt",
                                    VocabConfig(vocab_size=3000, num_unused=5, min_frequency=1))


def test_limit_alphabet_keeps_the_most_frequent_characters(tmp_path):
    corpus = tmp_path / "zh.txt"
    _chinese_corpus(corpus, num_chars=300)
    tokens = build_vocab([str(corpus)], tmp_path / "v.txt", VocabConfig(vocab_size=600, num_unused=0,
                                                                        limit_alphabet=20))
    kept = {t for t in tokens if len(t) == 1}
    # the letters and the punctuation of every line are the most frequent, then Chinese characters
    assert len(kept) == 20 and set("helowrd，。") <= kept
    with pytest.raises(BertDetrError, match="too small for this corpus.*--min-frequency or --limit-alphabet"):
        build_vocab([str(corpus)], tmp_path / "v2.txt", VocabConfig(vocab_size=200, num_unused=0))


def test_help_says_which_characters_are_kept(capsys):
    with pytest.raises(SystemExit):
        main(["bert", "build-vocab", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "every character seen at least this often is kept" in text and "Chinese" in text



@pytest.mark.parametrize("content,message", [
    ("café naïve résumé ".encode("latin-1") * 400, "is not UTF-8 text"),
    (b"text\x00more text\n", "NUL byte on line 1"),
    ("some text\n".encode("utf-16"), "NUL byte"),
])
def test_refuses_what_make_data_refuses(tmp_path, capsys, content, message):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(content)
    assert main(["bert", "build-vocab", "--input-file", str(corpus), "--output", str(tmp_path / "v.txt"),
                 "--vocab-size", "200", "--num-unused", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bertdetr: error: ") and message in err and str(corpus) in err
    assert not (tmp_path / "v.txt").exists()


def test_one_long_line_in_bounded_memory(tmp_path):
    """A corpus of one 12 MB line (no line breaks) learns the vocabulary of the same words in lines,
    in about the memory of the lines (it was not streamed: 1.15 GB against 0.3 GB, measured)."""
    import subprocess
    import sys

    from bertdetr.demo import bundled_books

    text = open(bundled_books(), encoding="utf-8").read()
    lines = (text * (12_000_000 // len(text) + 1))[:12_000_000]
    one_line, many = tmp_path / "one.txt", tmp_path / "many.txt"
    one_line.write_text(lines.replace("\n", " "), encoding="utf-8")
    many.write_text(lines, encoding="utf-8")
    child = ("import resource, sys; from bertdetr.cli import main; assert main(sys.argv[1:]) == 0; "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")  # this process's peak, KiB
    vocab, peak = [], []
    for corpus in (one_line, many):
        out = tmp_path / f"{corpus.stem}.vocab"
        r = subprocess.run([sys.executable, "-c", child, "bert", "build-vocab", "--input-file", str(corpus),
                            "--output", str(out), "--vocab-size", "1000", "--num-unused", "0"], check=True,
                           capture_output=True, text=True)
        peak.append(int(r.stdout.split()[-1]) / 1024)
        vocab.append(out.read_text(encoding="utf-8"))
    assert vocab[0] == vocab[1]
    assert peak[0] < 1.3 * peak[1] + 50, peak  # MB: the long line is read in blocks, as the lines
