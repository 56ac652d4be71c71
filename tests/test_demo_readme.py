"""The README's demo section shows what ``bertdetr demo`` prints and names the files it writes; a
reduced demo (a few steps of each half, the same code paths) must print those lines and write those
files, so the README cannot drift from the demo."""

import re
from pathlib import Path

from bertdetr import demo
from bertdetr.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = ["--bert-steps", "12", "--detr-epochs", "1", "--detr-images", "16", "--finetune-epochs", "0.1",
         "--no-progress"]


def demo_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Set-up on a fresh machine")
    return text[start:text.index("\n## ", start + 1)]


def readme_output(section: str) -> list[str]:
    """The lines of the section's ``text`` block that starts with ``$ bertdetr demo``."""
    block = re.search(r"```text\n\$ bertdetr demo\n(.*?)```", section, re.S)
    assert block, "the README's demo section shows no output block"
    return block.group(1).splitlines()


def readme_files(section: str) -> list[str]:
    """The ``demo_out/...`` files the section names in backquotes."""
    return re.findall(r"`(demo_out/[^`\s]+)`", section)


def shape(line: str, out: str) -> str:
    """A line with the output folder as the README's ``demo_out``, every number as ``#`` (the
    README's figures are the full demo's, the test's come from a reduced one) and the BERT's
    precision as ``<precision>``."""
    line = line.replace(out, "demo_out")
    # how the BERT trains depends on the CPU (bf16 where it multiplies bf16 in hardware)
    for precision in demo.PRECISION.values():
        line = line.replace(precision, "<precision>")
    line = line.replace(" --bf16", "")
    return re.sub(r"\d+(\.\d+)?", "#", line).rstrip()


def test_the_demo_prints_and_writes_what_the_readme_says(tmp_path, capsys):
    out = str(tmp_path / "demo_out")
    assert main(["demo", "--out", out, *SMALL, "--threads", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = {shape(line, out) for line in lines}
    section = demo_section()
    expected = readme_output(section)
    assert len(expected) >= 20, "the README's output block is shorter than the demo's report"
    missing = [line for line in expected
               # "...": lines left out; "hidden: ...": the model's guesses, which depend on how long it trained
               if line.strip() != "..." and not line.strip().startswith("hidden:")
               and shape(line, "demo_out") not in printed]
    assert not missing, f"README lines the demo does not print: {missing}"
    # the demo's precision and recall are what `detr predict --ann` says of the exported model
    command = next(line for line in lines if line.startswith("[9] predictions")).split("# bertdetr ", 1)[1]
    assert main(command.replace("--out " + out + "/detr/predictions", "--out " + str(tmp_path / "again")).split()) == 0
    again = capsys.readouterr().out.splitlines()[-1]
    assert again.startswith(f"at score >= {demo.DRAW_THRESHOLD:g}: precision") and "    " + again in lines
    files = readme_files(section)
    assert len(files) >= 5, files
    for name in files:
        assert (tmp_path / name).exists(), f"the README names {name}, the demo did not write it"


def test_shape_keeps_words_and_folders():
    assert shape("    precision 0.812 (13 of 16 boxes) in /x/demo_out/", "/x/demo_out") == \
        "    precision # (# of # boxes) in demo_out/"
    assert shape("[9] predictions", "o") == shape("[5] predictions", "o")
    assert shape("precision 0.8", "o") != shape("recall 0.8", "o")
