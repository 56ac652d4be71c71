"""The README's DETR Python example runs as written, on a converted model and real photos standing
in for the ones it names."""

import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from tests.detr.test_api import setup  # noqa: F401  (the fixture: a converted model and two photos)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_detr_example_runs(setup, tmp_path, monkeypatch):
    folder, paths, _ = setup
    text = README.read_text(encoding="utf-8")
    start = text.index("DETR as mmdet's API")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(folder, tmp_path / "detr-r50")
    for name, source in (("photo.jpg", paths[0]), ("a.jpg", paths[0]), ("b.jpg", paths[1])):
        Image.open(source).convert("RGB").save(tmp_path / name)
    # the example's folder reads photos at 800 px; the stand-in model is small, so is its scale
    code = code.replace('init_detector("detr-r50/")', 'init_detector("detr-r50/", device="cpu", test_size=96, max_size=160)')
    code = code.replace('pipeline("object-detection", model="detr-r50/")',
                        'pipeline("object-detection", model="detr-r50/", device="cpu", test_size=96, max_size=160)')
    code = code.replace('DetInferencer("detr-r50/")', 'DetInferencer("detr-r50/", device="cpu", test_size=96, max_size=160)')
    namespace: dict = {}
    shown = []
    namespace["print"] = lambda *args: shown.append(args)
    values = {}
    for line in (raw.split("#")[0].rstrip() for raw in code.splitlines()):
        if not line:
            continue
        if "=" in line.split("(")[0] or line.startswith(("from ", "import ")) or line.startswith(("print(", "draw(")):
            exec(line, namespace)
        else:
            values[line] = eval(line, namespace)
    assert (tmp_path / "photo-detections.png").is_file() and shown
    assert len(namespace["results"]) == 2
    one = values['detect("photo.jpg")']
    assert all(d["score"] > 0.5 for d in one) and all(set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"} for d in one)
    many = values['detect(["a.jpg", "b.jpg"], threshold=0.9)']
    assert len(many) == 2 and all(d["score"] > 0.9 for image in many for d in image)
    inferred = values['inferencer("photo.jpg", out_dir="outputs/")']
    assert inferred["predictions"][0]["scores"] == namespace["result"].scores.tolist()
    assert (tmp_path / "outputs" / "vis" / "photo.jpg").is_file() and len(inferred["visualization"]) == 1
    batched = values['detect(["a.jpg", "b.jpg", "photo.jpg"], batch_size=8)']
    assert len(batched) == 3 and [len(d) for d in batched] == [len(namespace["detect"](p)) for p in ("a.jpg", "b.jpg",
                                                                                                    "photo.jpg")]
    assert np.array_equal(namespace["result"].boxes, namespace["results"][0].boxes)
