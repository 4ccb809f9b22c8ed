"""What importing the layers and models loads: not the data stack, not PyG's utils (torch._dynamo)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["stgnn.nn", "stgnn.models"])
def test_importing_layers_and_models_leaves_the_heavy_modules_unloaded(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = ['torch_geometric.utils', 'torch._dynamo', 'pandas', 'networkx', 'stgnn.data.readers']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_data_package_still_exports_every_name() -> None:
    import stgnn.data as data
    import stgnn.data.readers
    import stgnn.data.registry

    assert data.load_dataset is stgnn.data.readers.load_dataset
    assert data.DATASETS is stgnn.data.registry.DATASETS
    for name in data.__all__:
        assert getattr(data, name) is not None
    assert set(dir(data)) >= set(data.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018
