"""mmdet .py configs are parsed, not executed, and read into our DETRConfig."""

import pytest

from bertdetr.detr.mmdet_config import load_mmdet_config
from bertdetr.detr.weights import from_mmdet
from bertdetr.errors import BertDetrError


def test_mmdet_py_config_with_bases(tmp_path, golden):
    import json

    (tmp_path / "base.py").write_text("model = " + repr(golden["config"]["model"]) + "\nimport os\n")
    (tmp_path / "child.py").write_text(
        "_base_ = './base.py'\n"
        "max_epochs = 150\n"
        "model = dict(num_queries=10, backbone=dict(depth=18), bbox_head=dict(num_classes=5),\n"
        "             test_cfg=dict(_delete_=True, max_per_img=2 * 4))\n"
        "train_cfg = dict(max_epochs=max_epochs + 350)\n")
    cfg = load_mmdet_config(tmp_path / "child.py")
    assert cfg["train_cfg"]["max_epochs"] == 500 and cfg["model"]["test_cfg"] == {"max_per_img": 8}
    assert cfg["model"]["encoder"] == golden["config"]["model"]["encoder"]
    model, _ = from_mmdet(str(tmp_path / "child.py"), golden["state_dict"])
    (tmp_path / "evil.py").write_text("model = __import__('os').system('echo hi')\n")
    with pytest.raises(BertDetrError, match="unsupported expression"):
        load_mmdet_config(tmp_path / "evil.py")
    (tmp_path / "c.json").write_text(json.dumps(golden["config"]))
    assert load_mmdet_config(tmp_path / "c.json") == golden["config"]
