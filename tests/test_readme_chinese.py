"""The README's Chinese walk-through runs as written (whole-word pretraining data with jieba,
pretraining, NER on CoNLL and CLUENER files (with a CRF and with spans too), a CLUE classification task, C3 and CHID multiple choice, CMRC-style reading comprehension) and gives what it says."""

import json
import pathlib
import re
import shlex


from bertdetr.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Chinese: whole-word pretraining", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    data = next(line.split("=", 1)[1] for line in lines if line.startswith("D="))
    return [shlex.split(line.replace("$D", str(ROOT / data)))[1:] for line in lines if line.startswith("bertdetr ")]


def test_the_chinese_walk_through_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = _commands()
    assert [c[:2] for c in commands] == [["bert", "make-data"], ["bert", "pretrain"], ["bert", "ner"],
                                         ["bert", "ner"], ["bert", "ner"], ["bert", "ner"], ["bert", "classify"], ["bert", "multiple-choice"],
                                         ["bert", "multiple-choice"], ["bert", "tag"], ["bert", "squad"]]
    for args in commands:
        assert main([*args, "--no-progress"]) == 0, args
    ner = json.loads((tmp_path / "zh" / "ner" / "eval_metrics.json").read_text())
    assert ner["eval_f1"] > 0.75  # the README says about 0.92
    cluener = json.loads((tmp_path / "zh" / "cluener" / "eval_metrics.json").read_text())
    assert cluener["eval_f1"] > 0.75 and cluener["cluener"]["macro_f1"] > 0.5 and (tmp_path / "zh" / "cluener" / "cluener_predict.json").is_file()
    crf = json.loads((tmp_path / "zh" / "cluener-crf" / "eval_metrics.json").read_text())
    assert crf["eval_f1"] > 0.75 and (tmp_path / "zh" / "cluener-crf" / "cluener_predict.json").is_file()
    span = json.loads((tmp_path / "zh" / "cluener-span" / "eval_metrics.json").read_text())
    assert span["eval_f1"] > 0.8 and (tmp_path / "zh" / "cluener-span" / "cluener_predict.json").is_file()
    tnews = [json.loads(line) for line in (tmp_path / "zh" / "tnews" / "tnews_predict.json").read_text().splitlines()]
    assert [t["id"] for t in tnews] == [0, 1, 2] and all(t["label"].isdigit() for t in tnews)
    c3 = json.loads((tmp_path / "zh" / "c3" / "eval_metrics.json").read_text())
    assert c3["num_examples"] == 3 and json.loads((tmp_path / "zh" / "c3" / "submission_test.json").read_text())
    chid = json.loads((tmp_path / "zh" / "chid" / "dev_predictions.json").read_text())
    assert sorted(chid) == ["#idiom000005#", "#idiom000006#", "#idiom000007#"]
    tagged = [json.loads(line) for line in (tmp_path / "zh" / "entities.jsonl").read_text(encoding="utf-8").splitlines()]
    corpus = (ROOT / "tests" / "data" / "bert" / "zh" / "corpus_zh.txt").read_text(encoding="utf-8").splitlines()
    assert [t["text"] for t in tagged] == corpus
    entities = [e for t in tagged for e in t["entities"]]
    assert entities and {e["entity_group"] for e in entities} <= {"PER", "LOC", "ORG"}
    assert all(e["span"] == t["text"][e["start"]:e["end"]] for t in tagged for e in t["entities"])
    cmrc = json.loads((tmp_path / "zh" / "cmrc" / "eval_metrics.json").read_text())
    assert cmrc["metric"] == "cmrc2018" and cmrc["TOTAL"] == 8 and cmrc["SKIP"] == 0
    assert (tmp_path / "zh" / "pretrain" / "model" / "vocab.txt").is_file()
