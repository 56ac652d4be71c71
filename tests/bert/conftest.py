import pytest

from bertdetr.bert import draws, records


@pytest.fixture(params=["compiled", "python"])
def code_path(request, monkeypatch):
    """Runs a test on the compiled module (``bertdetr.bert._speedups``: the draws and the varints)
    and on the pure-Python path."""
    if request.param == "compiled":
        if draws._compiled is None:
            pytest.skip("bertdetr.bert._speedups is not built (pip install -e ., or python setup.py "
                        "build_ext --inplace)")
    else:
        monkeypatch.setattr(draws, "_compiled", None)
        monkeypatch.setattr(records, "_compiled", None)
    return request.param
