"""``bertdetr bert tag``: the token-classification pipeline over a text file's lines, as JSON lines."""

import json
import warnings

import pytest

from bertdetr.bert import pipeline
from bertdetr.cli import main
from tests.bert.pipelines.conftest import close

LINES = ["John Smith's unaffable cat lives in Paris, don't worry!", "", "北京大学 and Tokyo 张伟住在北京",
         "Johanson lives in Paris. " * 12]


def test_tag_writes_each_lines_entities(folders, tmp_path, capsys):
    text = tmp_path / "raw.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "entities.jsonl"
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                 "--stride", "8", "--batch-size", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == LINES and rows[1]["entities"] == []
    expected = pipeline("ner", folders["ner"], device="cpu")(LINES, aggregation_strategy="simple", stride=8)
    for row, want in zip(rows, expected):
        close([{k: v for k, v in e.items() if k != "span"} for e in row["entities"]], want)
        assert all(e["span"] == row["text"][e["start"]:e["end"]] for e in row["entities"])
    assert max(e["end"] for e in rows[3]["entities"]) > 200  # the long line read in windows
    assert f"entities in {len(LINES)} lines (simple)" in capsys.readouterr().out


def test_tag_says_how_many_lines_it_cut_and_points_to_stride(folders, tmp_path, capsys):
    text = tmp_path / "raw.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "entities.jsonl"
    with pytest.warns(UserWarning, match=r"1 of the 4 lines were longer than the model's 32 positions and cut "
                                         r"there .*--stride N reads them whole"):
        assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                     "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert max(e["end"] for e in rows[3]["entities"]) < len(LINES[3]) // 2  # only its beginning was read
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read whole in windows: nothing cut, nothing said
        assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                     "--stride", "8", "--no-progress"]) == 0


def test_tag_bad_input_is_said(folders, tmp_path, capsys):
    out = tmp_path / "entities.jsonl"
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(tmp_path / "nope.txt"),
                 "--output", str(out)]) == 2
    assert "input file not found" in capsys.readouterr().err
    text = tmp_path / "raw.txt"
    text.write_text("a line\n", encoding="utf-8")
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                 "--stride", "40"]) == 2
    assert "stride must be an integer in [0, 30)" in capsys.readouterr().err
    assert main(["bert", "tag", "--model", folders["text-classification"], "--input-file", str(text),
                 "--output", str(out)]) == 2
    assert "not a BertForTokenClassification" in capsys.readouterr().err
    assert not out.exists()


def test_tag_in_chunks_equals_one_call(folders, tmp_path):
    """Over 1024 lines the file is tagged a chunk at a time (the progress bar's steps): the same
    rows as one call over all lines."""
    lines = [LINES[k % 3] + f" {k}" for k in range(1100)]
    text = tmp_path / "raw.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "entities.jsonl"
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                 "--batch-size", "16", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = pipeline("ner", folders["ner"], device="cpu", batch_size=16)(lines, aggregation_strategy="simple")
    assert len(rows) == 1100
    for row, want in zip(rows, expected):
        close([{k: v for k, v in e.items() if k != "span"} for e in row["entities"]], want)


def test_tag_reads_utf8_with_a_bom_and_refuses_gbk(folders, tmp_path, capsys):
    """Chinese text from Windows: Notepad's UTF-8 starts with a byte order mark (dropped, so offsets
    are the text's); a GBK file is an error saying how to convert it, not lines of garbage."""
    out = tmp_path / "entities.jsonl"
    text = tmp_path / "bom.txt"
    text.write_bytes("\ufeff张伟住在北京\n李娜在上海工作\n".encode("utf-8"))
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["张伟住在北京", "李娜在上海工作"]
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("张伟住在北京\n李娜在上海工作\n".encode("gbk"))
    for command in (["tag", "--model", folders["ner"]], ["embed", "--model", folders["feature-extraction"]]):
        assert main(["bert", *command, "--input-file", str(gbk), "--output", str(tmp_path / "x.out")]) == 2
        err = capsys.readouterr().err
        assert "gbk.txt is not UTF-8 text" in err and "iconv -f GBK -t UTF-8" in err
        assert not (tmp_path / "x.out").exists()


def test_tag_in_clueners_layout_reads_back_as_bert_ner_data(folders, tmp_path, capsys):
    from bertdetr.bert.finetuning.ner_data import read_cluener

    text = tmp_path / "raw.txt"
    text.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    out = tmp_path / "cluener.json"
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                 "--format", "cluener", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = pipeline("ner", folders["ner"], device="cpu")(LINES, aggregation_strategy="simple")
    assert [r["id"] for r in rows] == list(range(len(LINES))) and [r["text"] for r in rows] == LINES
    for row, want in zip(rows, expected):
        got = sorted((t, s, a, b + 1) for t, spans in row["label"].items() for s, offs in spans.items() for a, b in offs)
        assert got == sorted((e["entity_group"], row["text"][e["start"]:e["end"]], e["start"], e["end"]) for e in want)
    kept = tmp_path / "kept.json"  # bert ner's reader refuses an empty text (the blank line)
    kept.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["text"]), encoding="utf-8")
    assert [s.entities or {} for s in read_cluener(kept)] == [r["label"] for r in rows if r["text"]]
    assert main(["bert", "tag", "--model", folders["ner"], "--input-file", str(text), "--output", str(out),
                 "--format", "cluener", "--aggregation", "none"]) == 2
    assert "--format cluener writes entities" in capsys.readouterr().err
