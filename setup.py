"""The one compiled module, optional: without a C compiler the install still works and
``bertdetr bert make-data`` runs its pure-Python path (same files, slower). Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("bertdetr.bert.pretraining._speedups", ["src/bertdetr/bert/pretraining/_speedups.c"], optional=True),
    ],
)
