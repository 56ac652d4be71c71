import importlib.util
import json
import pathlib
import pickle
import re
import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertdetr.bert.data import tokenization
from bertdetr.bert.data.tokenization import FullTokenizer, VocabError, load_vocab


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


# --- The fast tokenizer against Google's plain algorithm (bench/reference_tokenization.py) -----------

def _load_reference():
    path = pathlib.Path(__file__).resolve().parents[3] / "bench" / "reference_tokenization.py"
    spec = importlib.util.spec_from_file_location("reference_tokenization", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_reference()
VOCAB_FILE = pathlib.Path(__file__).resolve().parents[2] / "data" / "bert" / "vocab-uncased.txt"
VOCAB = load_vocab(VOCAB_FILE)
LOWER = [True, False]


# Non-ASCII chunks are split one character at a time for a tokenizer's first
# BasicTokenizer.per_character_chunks of them, then by whole-Unicode regexes: both are tested.
CLASSES = {"per character": sys.maxsize, "regexes": 0}


def _pair(do_lower_case, classes=None):
    """(ours, Google's) FullTokenizer on the bert-base-uncased vocabulary, new (cold caches);
    ``classes`` (a key of CLASSES) fixes how ours splits non-ASCII chunks."""
    ours = FullTokenizer._from_vocab(VOCAB, do_lower_case)
    if classes is not None:
        ours.basic_tokenizer.per_character_chunks = CLASSES[classes]
    google = reference.FullTokenizer(None, do_lower_case, vocab=VOCAB)
    return ours, google


# for the generated examples
_SHARED = {(lower, classes): _pair(lower, classes) for lower in (True, False) for classes in CLASSES}


def _assert_same(ours, google, texts):
    for text in texts:
        expected = google.tokenize(text)
        assert ours.tokenize(text) == expected, repr(text)
        assert ours.tokenize_to_ids(text) == google.convert_tokens_to_ids(expected), repr(text)
        assert ours.basic_tokenizer.tokenize(text) == google.basic_tokenizer.tokenize(text), repr(text)


def _is_big_block(cp):
    # CJK ideographs, Hangul syllables and the planes above the BMP and SMP: long runs of
    # characters that behave alike, sampled below rather than tested one by one.
    return 0x3400 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7A3 or cp >= 0x20000


CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def _code_points():
    """Every code point outside the big blocks but unassigned (Cn) and private-use (Co) ones,
    every 97th of all the others, and the edges of Google's CJK ranges."""
    edges = {cp for a, b in CJK_RANGES for cp in (a - 1, a, b, b + 1)}
    return [
        cp for cp in range(sys.maxunicode + 1)
        if cp % 97 == 0 or cp in edges
        or (not _is_big_block(cp) and unicodedata.category(chr(cp)) not in ("Cn", "Co"))
    ]


@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("lower", LOWER)
def test_every_code_point_in_context(lower, classes):
    # Each character inside a word (is it deleted, a separator, punctuation, CJK?), then doubled
    # after a capital and before a full stop (lowercasing context, e.g. a final sigma).
    ours, google = _pair(lower, classes)
    cps = _code_points()
    assert len(cps) > 40000
    for i in range(0, len(cps), 64):
        line = " ".join(f"a{c}b A{c}{c}." for c in map(chr, cps[i:i + 64]))
        assert ours.tokenize(line) == google.tokenize(line), [hex(cp) for cp in cps[i:i + 64]]


def test_line_splitting_facts_for_every_code_point():
    # concat_chunks splits with str.split after deleting _DELETED_SEPARATORS; this is exact only if
    # str.split's whitespace is Google's whitespace, Zl/Zp (kept by Google's cleaning, then split
    # on), or one of the deleted separators.
    chars = [chr(cp) for cp in range(sys.maxunicode + 1)]
    spaces = [c for c in chars if c.isspace()]
    google_spaces = [c for c in chars if reference._is_whitespace(c)]
    assert set(google_spaces) <= set(spaces)
    for c in spaces:
        if c not in google_spaces:
            deleted = reference._is_control(c)
            assert deleted == bool(tokenization._DELETED_SEPARATORS.match(c)), hex(ord(c))
            assert deleted or unicodedata.category(c) in ("Zl", "Zp"), hex(ord(c))
    # Lowercasing and NFD never make whitespace (the fast path would split there anyway).
    text = "".join(c for c in chars if not c.isspace())
    assert re.search(r"\s", unicodedata.normalize("NFD", text.lower())) is None


ATOMS = [
    *"aAbBzZ09 .,;:'\"-_()[]{}$^`~@#%&*+=<>/\\|!?",
    "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\x00", "\x01", "\x7f",
    "\u00a0", "\u1680", "\u2000", "\u2009", "\u202f", "\u3000", "\u2028", "\u2029",
    "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\ufffd", "\U000e0001",
    "é", "É", "e\u0301", "\u0301", "\u0308", "ñ", "Ø", "ß", "ẞ", "ﬁ", "İ", "ı", "Σ", "σ", "ς", "ΟΔΟΣ",
    "中", "文", "字", "\u3400", "\uf900", "\U00020000", "\U0002f800", "한", "カ", "ー",
    "؟", "、", "。", "«", "»", "—", "–", "…", "\u1fef", "\u037e", "😀", "\ue000", "\u0378",
    "\U0001d400", "Ⅻ", "①", "²", "½", "\ud800",
    "the", "The", "unaffable", "running", "Héllo", "naïve", "CAFÉ", "[MASK]", "[UNK]", "##ing",
    "u" * 60, "ü" * 60,
]
TEXTS = st.lists(st.one_of(st.sampled_from(ATOMS), st.characters()), max_size=30).map("".join)
FAST = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("lower", LOWER)
@FAST
@given(texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_generated_text_matches_google(lower, classes, texts):
    ours, google = _SHARED[lower, classes]
    _assert_same(ours, google, texts)
    # ...also once the caches are warm (the same chunks again, in another order).
    _assert_same(ours, google, texts[::-1])


@FAST
@given(data=st.binary(max_size=60))
def test_bytes_with_invalid_utf8_match_google(data):
    ours, google = _SHARED[True, "per character"]
    assert ours.tokenize(data) == google.tokenize(data)
    assert ours.basic_tokenizer.tokenize(data) == google.basic_tokenizer.tokenize(data)


@pytest.mark.parametrize("lower", LOWER)
def test_tricky_inputs(lower):
    ours, google = _pair(lower)
    texts = [
        "", " ", "\n", "\x00\ufffd\u200b", "a\x0bb c\x85d e\u2028f g\u3000h i\u00a0j k\x1cl",
        "İstanbul İİ", "ΟΔΟΣ. ΟΔΟΣ.Α ΣΑΣ, Σ", "Straße STRASSE ﬁnance", "e\u0301te\u0301 \u0301",
        "中文abc中d 漢字。カタカナ 한국어", "\U00020000x\U0002a6dfy", "a\u1fefb a\u037eb",
        "[MASK] [CLS]x [unused1]", "U.S.A. e-mail (see: www.example.com/a?b=c&d)",
        "3.14159 1,000,000 $5 ^_^ `code`", "\t\tindented\r\nwindows line\r\n",
        "x" * 200, "x" * 201, "é" * 200, "é" * 201, "İ" * 150, "ab." * 100, "a" * 150 + "." + "b" * 150,
        "mixed ASCII and ünïcödé on one line, \u201cquoted\u201d \u2014 dash",
    ]
    _assert_same(ours, google, texts)
    _assert_same(ours, google, texts)


def test_long_words_and_unk():
    def joined(pieces):
        return "".join(p.removeprefix("##") for p in pieces)

    ours, _ = _pair(True)
    assert ours.tokenize("x" * 201) == ["[UNK]"]
    assert joined(ours.tokenize("x" * 200)) == "x" * 200
    # The limit applies to the word after lowercasing and accent stripping ("İ" -> "i").
    assert joined(ours.tokenize("İ" * 200)) == "i" * 200
    assert ours.tokenize("İ" * 201) == ["[UNK]"]
    assert _pair(False)[0].tokenize("é" * 201) == ["[UNK]"]
    assert ours.tokenize("ab\ue000cd the") == ["[UNK]", "the"]  # private use: kept, unknown


def test_standalone_basic_and_wordpiece_match_google():
    texts = [r["text"] for r in _golden(VOCAB_FILE.parent.parent, "uncased")]
    for lower in LOWER:
        basic = tokenization.BasicTokenizer(do_lower_case=lower)
        google_basic = reference.BasicTokenizer(do_lower_case=lower)
        for text in texts:
            assert basic.tokenize(text) == google_basic.tokenize(text)
    wordpiece = tokenization.WordpieceTokenizer(VOCAB, max_input_chars_per_word=10)
    google_wordpiece = reference.WordpieceTokenizer(VOCAB, max_input_chars_per_word=10)
    for text in ["unaffable running", "abcdefghij abcdefghijk", "\u00e9t\u00e9 x\ue000", " ", "a  b\n"]:
        assert wordpiece.tokenize(text) == google_wordpiece.tokenize(text)
    assert wordpiece.tokenize("unaffable") == ["una", "##ffa", "##ble"]


def test_changing_do_lower_case_of_basic_tokenizer():
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    assert basic.tokenize("Héllo") == ["hello"]
    basic.do_lower_case = False
    assert basic.tokenize("Héllo") == ["Héllo"]


def test_per_character_classes_equal_the_regexes_on_every_code_point():
    # The operations are local to each character: run them over all of Unicode, in blocks, each
    # character between two letters.
    chars, regexes = tokenization._CharClasses(), tokenization._unicode_classes()
    for start in range(0, sys.maxunicode + 1, 4096):
        text = "".join(f"a{chr(cp)}" for cp in range(start, min(start + 4096, sys.maxunicode + 1))) + "a"
        assert chars.delete(text) == regexes.delete(text), hex(start)
        assert chars.strip_marks(text) == regexes.strip_marks(text), hex(start)
        assert chars.split_words(text) == regexes.split_words(text), hex(start)


def test_switch_from_per_character_to_regexes():
    ours, google = _pair(True)
    ours.basic_tokenizer.per_character_chunks = 3
    words = ["Héllo", "naïve,", "ΟΔΟΣ.", "Café", "żółw!", "東京", "x"]
    _assert_same(ours, google, [" ".join(words)])
    assert ours.basic_tokenizer._non_ascii_chunks == 3  # then the regexes, for the other three


def test_bounded_caches_stay_correct(monkeypatch):
    monkeypatch.setattr(FullTokenizer, "cache_size", 3)
    monkeypatch.setattr(tokenization.WordpieceTokenizer, "cache_size", 2)
    ours, google = _pair(True)
    texts = [r["text"] for r in _golden(VOCAB_FILE.parent.parent, "uncased")] * 2
    _assert_same(ours, google, texts)
    assert len(ours._chunk_tokens) <= 3 and len(ours._chunk_ids) <= 3
    assert len(ours.wordpiece_tokenizer._pieces) <= 2


def test_pickles_without_caches():
    ours, google = _pair(False)
    ours.tokenize("Warm the cache")
    copy = pickle.loads(pickle.dumps(ours))
    assert len(copy._chunk_tokens) == 0 and copy.do_lower_case is False
    assert copy.tokenize("Héllo, World") == google.tokenize("Héllo, World")


@pytest.mark.parametrize("case,lower", [("uncased", True), ("cased", False)])
def test_reference_matches_google_token_for_token(data_dir, case, lower):
    """The oracle of the tests above is itself checked against Google's own output."""
    tok = reference.FullTokenizer(None, lower, vocab=VOCAB)
    for record in _golden(data_dir, case):
        assert tok.tokenize(record["text"]) == record["tokens"], record["text"]
