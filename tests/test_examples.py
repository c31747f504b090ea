"""Every example parameter file fits its notebook's parameters cell."""

from pathlib import Path

import pytest

from opslib._notebook import read_parameters, resolve_notebook
from opslib._params import coerce_parameters, load_parameter_file

EXAMPLES = sorted(
    (Path(__file__).parent.parent / "parameters" / "examples").glob("*.yaml")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_parameters_fit_their_notebook(path):
    specs = read_parameters(resolve_notebook(path.stem))
    values = coerce_parameters(specs, load_parameter_file(path))
    assert set(values) <= set(specs)
