import json

import torch
from PIL import Image
from torch import nn

from bertdetr.cli import main
from bertdetr.detr.attention import attention_weights, capture_attention
from bertdetr.detr.model import build_detr
from bertdetr.detr.train import model_config_from_dict, with_num_classes
from bertdetr.detr.weights import save_detr
from bertdetr.nn.transformer import MultiHeadAttention

TINY = {"preset": "r18", "num_queries": 4,
        "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
        "decoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
        "positional_encoding": {"num_feats": 16}}


def test_recomputed_weights_equal_torch_multihead_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = MultiHeadAttention(16, 4)
    with torch.no_grad():
        ours.in_proj_weight.copy_(ref.in_proj_weight)
        ours.in_proj_bias.copy_(torch.randn(48))
        ref.in_proj_bias.copy_(ours.in_proj_bias)
    q, k = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[0, 3:] = True
    expected = ref(q, k, k, key_padding_mask=pad, need_weights=True, average_attn_weights=True)[1]
    got = attention_weights(ours, q, k, (~pad)[:, None, None, :])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_capture_shapes_and_rows_sum_to_one():
    torch.manual_seed(0)
    model = build_detr(with_num_classes(model_config_from_dict(TINY), 3)).eval()
    images = torch.randn(1, 3, 64, 96)
    out = capture_attention(model, images, torch.zeros(1, 64, 96, dtype=torch.bool))
    h, w = out["feature_hw"]
    assert (h, w) == (2, 3)
    assert out["decoder_attention"].shape == (1, 4, h, w)
    assert out["encoder_attention"].shape == (1, h * w, h, w)
    torch.testing.assert_close(out["decoder_attention"].sum((-1, -2)), torch.ones(1, 4))
    # the hooks are gone and the outputs equal a plain forward
    torch.testing.assert_close(out["pred_logits"], model(images, torch.zeros(1, 64, 96, dtype=torch.bool))["pred_logits"])


def test_attention_cli_writes_pictures(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = with_num_classes(model_config_from_dict(TINY), 2)
    save_detr(build_detr(cfg), cfg, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "classes.json").write_text(json.dumps({"category_ids": [5, 9], "class_names": ["a", "b"]}))
    Image.new("RGB", (80, 60), (30, 120, 200)).save(tmp_path / "img.png")
    assert main(["detr", "attention", "--checkpoint", str(tmp_path / "ckpt"), str(tmp_path / "img.png"),
                 "--out", str(tmp_path / "att"), "--threshold", "0", "--top", "2", "--point", "10,20",
                 "--test-size", "64"]) == 0
    names = sorted(p.name for p in (tmp_path / "att").iterdir())
    assert names == ["img_det0.png", "img_det1.png", "img_enc0.png"]
    assert Image.open(tmp_path / "att" / "img_enc0.png").size == (80, 60)
    assert main(["detr", "attention", "--checkpoint", str(tmp_path / "ckpt"), str(tmp_path / "img.png"),
                 "--out", str(tmp_path / "att"), "--point", "500,20", "--test-size", "64"]) == 2
    assert "outside the image" in capsys.readouterr().err
