import json

import pytest
import torch


def tiny_detr_config(num_queries: int, num_classes: int):
    """An R18 DETR of one encoder and one decoder layer of width 32: a model of test size."""
    from bertdetr.detr.train_config import model_config_from_dict

    return model_config_from_dict(
        {"preset": "r18", "num_queries": num_queries,
         "encoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
         "decoder": {"num_layers": 1, "embed_dims": 32, "feedforward_channels": 64, "num_heads": 4},
         "positional_encoding": {"num_feats": 16}}).with_num_classes(num_classes)


@pytest.fixture(scope="session")
def golden(request):
    """tests/data/detr/mmdet_detr_small.pt (MMDetection 3.3 DETR, R18, random weights) and its config."""
    from tests.conftest import DATA

    g = torch.load(DATA / "detr" / "mmdet_detr_small.pt", weights_only=True)
    g["config"] = json.loads((DATA / "detr" / "mmdet_detr_small.config.json").read_text())
    return g


@pytest.fixture(scope="session")
def golden_model(golden):
    from bertdetr.detr.convert.load import from_mmdet

    return from_mmdet(golden["config"], golden["state_dict"])


@pytest.fixture(scope="session")
def golden2():
    """tests/data/detr/mmdet2_detr_small.pt (MMDetection 2.28 DETR, R18, random weights: its names, its
    ``meta``) and the full config as mmcv prints it (``mmdet2_detr_small.config.py``)."""
    from tests.conftest import DATA

    return torch.load(DATA / "detr" / "mmdet2_detr_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden2_model(golden2):
    from tests.conftest import DATA

    from bertdetr.detr.convert.load import from_mmdet

    return from_mmdet(DATA / "detr" / "mmdet2_detr_small.config.py", golden2)
