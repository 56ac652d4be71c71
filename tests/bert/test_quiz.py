import re

import pytest
import torch

from bertdetr.bert.data.tokenization import FullTokenizer
from bertdetr.bert.model import BertConfig, build_bert_for_pretraining
from bertdetr.bert.quiz import QuizItem, fill_mask_quiz, frequency_guess_rate, held_out_sentences
from bertdetr.errors import BertDetrError

TEXT = """The cat sat on the mat and looked at the dog.
The dog ran to the door, and the cat ran after it.
She said that the garden was full of roses and tulips.
A bird sang in the tree while the children played outside.
Too short.

The old man walked slowly down the road to the village.
Nobody knew where the strange traveller had come from.
"""
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", '"', "the", "cat", "sat", "on", "mat", "and",
         "looked", "at", "dog", "ran", "to", "door", "after", "it", "she", "said", "that", "garden", "was", "full",
         "of", "a", "bird", "sang", "in", "tree", "old", "man", "walked", "road", "village", "##s", "ro", "##se"]


@pytest.fixture()
def setup(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (tmp_path / "text.txt").write_text(TEXT)
    tok = FullTokenizer(str(tmp_path / "vocab.txt"))

    def model(seed):
        torch.manual_seed(seed)
        return build_bert_for_pretraining(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=32)).eval()
    return tok, model, str(tmp_path / "text.txt")


def test_sentences_with_enough_words(setup):
    _, _, path = setup
    sentences = held_out_sentences(path, min_words=6)
    assert "Too short." not in sentences and len(sentences) == 6


def test_the_draw_does_not_depend_on_the_model(setup):
    tok, model, path = setup
    sentences = held_out_sentences(path)
    a = fill_mask_quiz(model(0), tok, sentences, 4, seed=3)
    b = fill_mask_quiz(model(1), tok, sentences, 4, seed=3)
    assert [(i.text, i.word) for i in a.items] == [(i.text, i.word) for i in b.items]
    c = fill_mask_quiz(model(0), tok, sentences, 4, seed=4)
    assert [(i.text, i.word) for i in a.items] != [(i.text, i.word) for i in c.items]
    for item in a.items:
        assert item.text.count("[MASK]") == 1
        # the hidden word is one WordPiece; "roses" (ro ##se ##s) and words out of the vocabulary never are
        assert tok.tokenize(item.word) == [item.word.lower()]
        assert len(item.guesses) == 5 and all(re.fullmatch(r"[a-z]+", g) for g in item.guesses)
    # words: "roses", "tulips", "played", "outside", ... are not single pieces of VOCAB
    assert 0.5 < a.coverage < 1.0


def test_guesses_may_be_any_token_but_special(setup):
    tok, model, path = setup
    q = fill_mask_quiz(model(0), tok, held_out_sentences(path), 6, seed=0, top_k=len(VOCAB) - 5, words_only=False)
    guessed = set(q.items[0].guesses)
    assert {".", ",", "##s"} <= guessed and not guessed & {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}


def test_rates_and_baseline(setup, tmp_path):
    tok, _, path = setup
    items = [QuizItem("x [MASK]", "The", ["the", "a", "cat", "dog", "mat"], [0.5, 0.2, 0.1, 0.1, 0.1]),
             QuizItem("x [MASK]", "mat", ["the", "a", "cat", "dog", "mat"], [0.5, 0.2, 0.1, 0.1, 0.1]),
             QuizItem("x [MASK]", "tree", ["the", "a", "cat", "dog", "mat"], [0.5, 0.2, 0.1, 0.1, 0.1])]
    from bertdetr.bert.quiz import QuizResult

    result = QuizResult(items, 5, 1.0)
    assert [it.rank for it in items] == [1, 5, None]
    assert result.rate(1) == pytest.approx(1 / 3) and result.rate(5) == pytest.approx(2 / 3)
    rate, common = frequency_guess_rate(result, tok, path)
    assert common[0] == "the" and len(common) == 5 and rate == pytest.approx(1 / 3)


def test_too_few_sentences(setup):
    tok, model, path = setup
    with pytest.raises(BertDetrError, match="only 6 sentences to draw 7 from"):
        fill_mask_quiz(model(0), tok, held_out_sentences(path), 7, seed=0)
