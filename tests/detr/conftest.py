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
