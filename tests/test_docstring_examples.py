"""The runnable Examples in the public docstrings do run."""

import doctest
import importlib

import pytest

MODULES = [
    "stgnn.nn.adaptive", "stgnn.nn.blocks", "stgnn.nn.diffusion", "stgnn.nn.graph_conv",
    "stgnn.nn.graph_ops", "stgnn.nn.temporal", "stgnn.nn.inits", "stgnn.nn.dropout",
    "stgnn.models.baselines", "stgnn.models.stgcn",
    "stgnn.models.dcrnn", "stgnn.models.gwnet", "stgnn.metrics", "stgnn.data.graph",
    "stgnn.data.integrity", "stgnn.training.schedules", "stgnn.training.runlock",
    "stgnn.models.tgcn", "stgnn.protocols.tgcn", "stgnn.explain.attribution", "stgnn.explain.maps",
    "stgnn.nn.attention", "stgnn.nn.partition", "stgnn.models.fusion", "stgnn.models.transformer",
    "stgnn.models.stpatch", "stgnn.data.impute", "stgnn.data.partition",
    "stgnn.distributions", "stgnn.models.heads",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
