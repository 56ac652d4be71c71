import json

import pytest
import torch


@pytest.fixture(scope="session")
def golden(request):
    """tests/data/detr/mmdet_detr_small.pt (MMDetection 3.3 DETR, R18, random weights) and its config."""
    from tests.conftest import DATA

    g = torch.load(DATA / "detr" / "mmdet_detr_small.pt", weights_only=True)
    g["config"] = json.loads((DATA / "detr" / "mmdet_detr_small.config.json").read_text())
    return g


@pytest.fixture(scope="session")
def golden_model(golden):
    from bertdetr.detr.weights import from_mmdet

    return from_mmdet(golden["config"], golden["state_dict"])
