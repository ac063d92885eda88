"""Names every docstring example may use, as a notebook would have them (doctests of ``sas_lens``)."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import torch

    import sas_lens as sl

    doctest_namespace.update(sl=sl, torch=torch)
