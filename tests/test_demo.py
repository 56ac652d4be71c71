from bertdetr.cli import main


def test_demo_runs_end_to_end_on_bundled_data(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--bert-steps", "12", "--detr-epochs", "1",
                 "--detr-images", "16", "--finetune-epochs", "0.1"]) == 0
    out = capsys.readouterr().out
    for step in ("[1] vocab", "[2] pretraining data", "[4] held-out", "masked-LM accuracy", "[5] fill-mask",
                 "[5b] fine-tuning", "held-out accuracy: pretrained", "[6] synthetic COCO", "[8] COCO mAP",
                 "[9] predictions drawn"):
        assert step in out, step
    assert (tmp_path / "bert" / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "detr" / "predictions" / "val_000000.png").is_file()
