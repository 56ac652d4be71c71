"""mmdet .py configs are parsed, not executed, and read into our DETRConfig."""

import pytest

from bertdetr.detr.convert.mmdet_config import load_mmdet_config
from bertdetr.detr.convert.load import from_mmdet
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


# ---- mmdet's own config trees (tests/data/detr/mmdet_configs: mmdet 3.3's and 2.28's DETR configs with
# their _base_ files, and small cases), compared with what mmengine / mmcv 1.x resolve them to


def _configs():
    from tests.conftest import DATA

    return DATA / "detr" / "mmdet_configs"


def _plain(value):
    """Tuples as lists, as the JSON goldens hold them."""
    import json

    return json.loads(json.dumps(value))


@pytest.mark.parametrize("rel", [
    "mmdet3/configs/detr/detr_r50_8xb2-150e_coco.py", "mmdet3/configs/detr/detr_r18_8xb2-500e_coco.py",
    "mmdet3/configs/detr/detr_small.py", "mmdet3/configs/extras/features.py",
    "mmdet2/configs/detr/detr_r50_8x2_150e_coco.py", "mmdet2/configs/detr/detr_small.py"])
def test_config_trees_resolve_as_mmengine_and_mmcv(rel):
    import json

    path = _configs() / rel
    expected = json.loads(path.with_suffix(".resolved.json").read_text())
    assert _plain(load_mmdet_config(path)) == expected


def test_features_config_resolved_details():
    cfg = load_mmdet_config(_configs() / "mmdet3/configs/extras/features.py")
    assert cfg["work_dir"] == "./work_dirs/features" and cfg["ext"] == ".py"  # predefined variables
    assert cfg["train_pipeline"][0] == {"type": "LoadImageFromFile", "backend_args": None}  # {{_base_.backend_args}}
    assert cfg["custom"] == {"a": {"b": 1, "keep": True, "c": 2}, "l": [3], "t": {"x": 1}}
    assert cfg["model"]["test_cfg"] == {"max_per_img": 8} and cfg["depth"] == 50
    # a key new to the base keeps its _delete_, as mmengine leaves it
    assert cfg["model"]["new_part"] == {"_delete_": True, "inner": {"_delete_": True, "v": -1}}


def test_shipped_configs_are_the_presets():
    from bertdetr.detr.config import DETRConfig
    from bertdetr.detr.convert.mmdet_config import config_from_mmdet

    def read(rel):
        return config_from_mmdet(load_mmdet_config(_configs() / rel))

    assert read("mmdet3/configs/detr/detr_r50_8xb2-150e_coco.py") == DETRConfig.r50()
    assert read("mmdet2/configs/detr/detr_r50_8x2_150e_coco.py") == DETRConfig.r50()
    assert read("mmdet3/configs/detr/detr_r18_8xb2-500e_coco.py") == DETRConfig.r18()


def test_small_config_trees_are_the_golden_models(golden, golden2_model):
    """The golden cases written as users write them (a shipped config inherited and shrunk) read as the
    configs the goldens were made from, and load their checkpoints."""
    import json

    from bertdetr.detr.convert.mmdet_config import config_from_mmdet
    from tests.conftest import DATA

    _, config2 = golden2_model
    for tree in ("mmdet2", "mmdet3"):
        assert config_from_mmdet(load_mmdet_config(_configs() / tree / "configs/detr/detr_small.py")) == config2
    assert config_from_mmdet(golden["config"]) == config2  # the two goldens are the same architecture
    printed = load_mmdet_config(DATA / "detr" / "mmdet2_detr_small.config.py")["model"]
    assert _plain(printed) == _plain(load_mmdet_config(_configs() / "mmdet2/configs/detr/detr_small.py")["model"])
    assert json.loads(json.dumps(printed))["bbox_head"]["num_query"] == 10


def _write(tmp_path, files: dict):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path / next(iter(files))


@pytest.mark.parametrize("files,match", [
    ({"c.py": "_base_ = './missing.py'\n"}, r"mmdet config not found: .*missing.py \(a _base_ of .*c.py\)"),
    ({"c.py": "_base_ = ['a.py', 'b.py']\n", "a.py": "x = 1\ny = 2\n", "b.py": "y = 3\n"},
     "the _base_ files both set y"),
    ({"c.py": "_base_ = 'a.py'\nz = {{_base_.nope.deeper}}\n", "a.py": "x = 1\n"}, r"_base_.nope.deeper.*no such value"),
    ({"c.py": "_base_ = 'a.py'\nx = dict(k=1)\n", "a.py": "x = 5\n"}, "x is a dict here but a int in the _base_.*_delete_"),
    ({"c.py": "_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'\n"}, "inside an installed package"),
    ({"c.py": "from mmengine.config import read_base\nwith read_base():\n    from .a import *\n"}, "read_base"),
    ({"c.py": "_base_ = 'c.py'\n"}, "inherits from itself"),
    ({"c.py": "model = __import__('os').system('echo hi')\n"}, "unsupported expression"),
    ({"c.py": "model = dict(a=1)\nmodel['a'] = 2\n"}, "unsupported statement"),
    ({"c.py": "x = _base_.model\n"}, "unsupported expression"),  # no _base_ files
    ({"c.py": "x = 'a' - 1\n"}, r"'a' - 1"),
    ({"c.yaml": "x: 1\n"}, r"must be a \.py or \.json file"),
])
def test_config_file_errors_name_what_does_not_fit(tmp_path, files, match):
    path = _write(tmp_path, files)
    with pytest.raises(BertDetrError, match=match):
        load_mmdet_config(path)


def test_json_config_with_bases(tmp_path):
    path = _write(tmp_path, {"c.json": '{"_base_": "a.py", "x": {"b": 2}, "y": {{_base_.x}}}', "a.py": "x = dict(a=1)\n"})
    assert load_mmdet_config(path) == {"x": {"a": 1, "b": 2}, "y": {"a": 1}}


# ---- the 2.x layout: what does not fit is named


def _small2():
    return load_mmdet_config(_configs() / "mmdet2/configs/detr/detr_small.py")


def _edit(cfg, path, value):
    import copy

    cfg = copy.deepcopy(cfg)
    *keys, last = path.split(".")
    d = cfg
    for k in keys:
        d = d[k]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value
    return cfg


ENC = "model.bbox_head.transformer.encoder"
DEC = "model.bbox_head.transformer.decoder"


@pytest.mark.parametrize("path,value,match", [
    (f"{ENC}.transformerlayers.operation_order", ("norm", "self_attn", "norm", "ffn"), "operation_order.*post-norm"),
    (f"{DEC}.return_intermediate", False, "return_intermediate must be True"),
    ("model.bbox_head.in_channels", 2048, r"in_channels\) \[2048\] does not fit ResNet-18's 512"),
    (f"{ENC}.transformerlayers.ffn_cfgs", KeyError, "FFN's embed_dims 256 differ from the attention's 64"),
    (f"{DEC}.transformerlayers.attn_cfgs", [{"type": "MultiheadAttention", "embed_dims": 64, "num_heads": 8}],
     "2 attention config.*got 1"),
    (f"{ENC}.transformerlayers.attn_cfgs", [{"type": "MultiScaleDeformableAttention", "embed_dims": 64}],
     "MultiheadAttention"),
    ("model.bbox_head.transformer.type", "DeformableDetrTransformer", "only mmdet's DETR 'Transformer'"),
    ("model.bbox_head.transformer.encoder", KeyError, r"no encoder/decoder \(nor the flat num_encoder_layers"),
    ("model.train_cfg.assigner.reg_cost", {"type": "BBoxL1Cost", "weight": 5.0}, "box_format 'xywh'.*got 'xyxy'"),
    ("model.train_cfg.assigner.cls_cost", {"type": "FocalLossCost", "weight": 2.0}, "FocalLossCost"),
    ("model.bbox_head.type", "DeformableDETRHead", "only 'DETRHead'"),
    ("model.bbox_head.loss_iou", {"type": "IoULoss", "loss_weight": 2.0}, "only GIoULoss"),
    ("model.bbox_head.transformer", KeyError, "neither encoder/decoder"),
])
def test_mmdet2_config_errors_name_the_field(path, value, match):
    from bertdetr.detr.convert.mmdet_config import config_from_mmdet

    with pytest.raises(BertDetrError, match=match):
        config_from_mmdet(_edit(_small2(), path, value))


def test_mmdet2_per_layer_configs_and_deprecated_ffn_arguments():
    from bertdetr.detr.convert.mmdet_config import config_from_mmdet

    cfg = _small2()
    base = config_from_mmdet(cfg)
    layer = cfg["model"]["bbox_head"]["transformer"]["encoder"]["transformerlayers"]
    same = config_from_mmdet(_edit(cfg, f"{ENC}.transformerlayers", [layer, layer]))
    assert same == base
    other = dict(layer, ffn_cfgs=dict(layer["ffn_cfgs"], feedforward_channels=96))
    with pytest.raises(BertDetrError, match="layers configured differently"):
        config_from_mmdet(_edit(cfg, f"{ENC}.transformerlayers", [layer, other]))
    # mmcv 1.x: the deprecated feedforward_channels / ffn_dropout override ffn_cfgs
    over = config_from_mmdet(_edit(cfg, f"{DEC}.transformerlayers.feedforward_channels", 96))
    assert over.decoder.feedforward_channels == 96 and over.encoder.feedforward_channels == 128


FLAT = """
# mmdet 2.7-2.11's detr_r50_8x2_150e_coco.py layout (TransformerHead, one flat Transformer config,
# train_cfg/test_cfg beside the model), shrunk to the golden case
model = dict(
    type='DETR',
    pretrained=None,
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, ), frozen_stages=1,
                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='pytorch'),
    bbox_head=dict(
        type='TransformerHead', num_classes=5, in_channels=512, num_fcs=2, num_query=10,
        transformer=dict(
            type='Transformer', embed_dims=64, num_heads=8, num_encoder_layers=2, num_decoder_layers=2,
            feedforward_channels=128, dropout=0.0, act_cfg=dict(type='ReLU', inplace=True),
            norm_cfg=dict(type='LN'), num_fcs=2, pre_norm=False, return_intermediate_dec=True),
        positional_encoding=dict(type='SinePositionalEncoding', num_feats=32, normalize=True),
        loss_cls=dict(type='CrossEntropyLoss', bg_cls_weight=0.1, use_sigmoid=False, loss_weight=1.0,
                      class_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0)))
train_cfg = dict(
    assigner=dict(type='HungarianAssigner', cls_weight=1., bbox_weight=5., iou_weight=2.,
                  iou_calculator=dict(type='BboxOverlaps2D'), iou_mode='giou'))
test_cfg = dict(max_per_img=8)
"""


def test_pre_2_12_flat_config_reads_as_the_nested_one(tmp_path, golden2, golden2_model):
    from bertdetr.detr.convert.mmdet_config import config_from_mmdet

    (tmp_path / "detr_v27.py").write_text(FLAT)
    _, config2 = golden2_model
    assert config_from_mmdet(load_mmdet_config(tmp_path / "detr_v27.py")) == config2
    (tmp_path / "pre_norm.py").write_text(FLAT.replace("pre_norm=False", "pre_norm=True"))
    with pytest.raises(BertDetrError, match=r"transformer: only DETR's post-norm \(pre_norm=False\)"):
        config_from_mmdet(load_mmdet_config(tmp_path / "pre_norm.py"))


def test_config_text_kept_in_checkpoints_reads_as_the_file():
    """mmengine checkpoints keep the resolved config's pretty_text in meta['cfg'] (mmcv 1.x's in
    meta['config']: tests/data/detr/mmdet2_detr_small.config.py is one)."""
    from bertdetr.detr.convert.mmdet_config import mmdet_config_from_text

    small = _configs() / "mmdet3/configs/detr/detr_small.py"
    text = small.with_suffix(".pretty.txt").read_text()
    assert _plain(mmdet_config_from_text(text)) == _plain(load_mmdet_config(small))
    with pytest.raises(BertDetrError, match="inherits _base_ files it does not carry"):
        mmdet_config_from_text("_base_ = './x.py'\nmodel = dict()\n")
