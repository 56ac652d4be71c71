"""Makes the question-answering goldens: a tiny random ``BertForQuestionAnswering`` folder
(``qa_model/``) and what transformers 4's ``pipeline("question-answering")`` answers with it
(``qa_golden.json``). transformers 5 removed that pipeline, so this runs in a throwaway venv::

    python -m venv --system-site-packages /tmp/tf4 && /tmp/tf4/bin/pip install "transformers<5"
    /tmp/tf4/bin/python tests/data/bert/pipelines/make_qa_goldens.py      # transformers 4.57.6

The vocabulary is every piece Google's uncased WordPiece makes of the cases' texts plus the
Chinese test vocabulary's characters (a small folder); the model reads 64 positions, so the long
contexts (English prose from squad/dev-v2.0.json, Chinese from cmrc/cmrc_sample_dev.json) are read
in several windows. Its span head is scaled up so that the best spans stand apart (a random
head's probabilities are nearly flat, and near-ties would turn on float rounding).
"""

import json
import os

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..")


def cases():
    squad = json.load(open(os.path.join(DATA, "squad", "dev-v2.0.json"), encoding="utf-8"))
    cmrc = json.load(open(os.path.join(DATA, "cmrc", "cmrc_sample_dev.json"), encoding="utf-8"))
    en = squad["data"][0]["paragraphs"][0]["context"][:900]
    zh = "".join(p["context"] for p in cmrc["data"][0]["paragraphs"])
    zh2 = cmrc["data"][1]["paragraphs"][0]["context"]
    short = "John Smith lives in Paris, near the unaffable river Seine."
    return [
        ("default, English, many windows", dict(question="What does Sherlock Holmes call her?", context=en)),
        ("default, Chinese, many windows", dict(question="早点摊前飘着什么的香味？", context=zh)),
        ("top_k 5", dict(question="Who does he love?", context=en, top_k=5)),
        ("top_k 4, Chinese", dict(question="王阿姨每天几点出门？", context=zh, top_k=4)),
        ("no answer allowed", dict(question="Where?", context=short, handle_impossible_answer=True, top_k=3)),
        ("not aligned to words", dict(question="Who is unaffable?", context=short, align_to_words=False, top_k=3)),
        ("aligned to words", dict(question="Who is unaffable?", context=short, top_k=3)),
        ("small windows", dict(question="What eclipses?", context=en, max_seq_len=24, doc_stride=4, top_k=2)),
        ("long answers", dict(question="What eclipses?", context=en, max_answer_len=40)),
        ("one short answer", dict(question="哪里？", context=zh2, max_answer_len=1)),
        ("questions, one context", dict(question=["Who?", "Where does John live?"], context=short)),
        ("questions and contexts", dict(question=["Who?", "什么？"], context=[short, zh2], top_k=2)),
    ]


def main():
    full = transformers.BertTokenizer(os.path.join(DATA, "vocab-uncased.txt"))
    pieces = set()
    for _, kw in cases():
        for key in ("question", "context"):
            for text in kw[key] if isinstance(kw[key], list) else [kw[key]]:
                pieces.update(full.tokenize(text))
    zh = [t for t in open(os.path.join(DATA, "zh", "vocab_zh.txt"), encoding="utf-8").read().split("\n")[5:] if t]
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = special + sorted((pieces | set(zh)) - set(special))
    folder = os.path.join(HERE, "qa_model")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    model = transformers.BertForQuestionAnswering(config).eval()
    with torch.no_grad():
        model.qa_outputs.weight.mul_(25.0)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer = transformers.BertTokenizerFast(os.path.join(folder, "vocab.txt"), model_max_length=64)
    tokenizer.save_pretrained(folder)
    for extra in ("tokenizer.json", "special_tokens_map.json"):  # vocab.txt and tokenizer_config.json suffice
        os.remove(os.path.join(folder, extra))
    qa = transformers.pipeline("question-answering", model=folder, tokenizer=folder, device="cpu")
    golden = [{"case": name, "kwargs": kw, "answer": qa(**kw)} for name, kw in cases()]
    with open(os.path.join(HERE, "qa_golden.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "cases": golden}, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
