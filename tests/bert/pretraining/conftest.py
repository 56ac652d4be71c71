import pytest

from bertdetr.bert.pretraining import draws, features


@pytest.fixture(params=["compiled", "python"])
def code_path(request, monkeypatch):
    """Runs a test on the compiled module (``bertdetr.bert.pretraining._speedups``: the draws and the
    varints) and on the pure-Python path."""
    if request.param == "compiled":
        if draws._compiled is None:
            pytest.skip("bertdetr.bert.pretraining._speedups is not built (pip install -e ., or python setup.py "
                        "build_ext --inplace)")
    else:
        monkeypatch.setattr(draws, "_compiled", None)
        monkeypatch.setattr(features, "_compiled", None)
    return request.param
