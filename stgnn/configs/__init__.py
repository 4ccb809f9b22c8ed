"""The paper configurations, shipped as package data: ``stgnn/configs/<model>/<dataset>.toml``.

Each file holds only what differs from the defaults of :mod:`stgnn.training.config` to
reproduce a published number; ``stgnn train`` uses it for that model and dataset and
``stgnn reproduce`` runs it.  The files are read through :mod:`importlib.resources`, so a
wheel install finds them as a source checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from stgnn.data.registry import DATASETS
from stgnn.training.config import RunConfig, merge, parse_toml

__all__ = ["available_configs", "paper_config", "paper_config_name", "paper_config_raw"]


def _file(model: str, dataset: str) -> Traversable:
    return files(__name__).joinpath(model, f"{dataset}.toml")


def paper_config_name(model: str, dataset: str) -> str:
    """How a paper config is named in messages and records: ``stgnn/configs/MODEL/DATASET.toml``."""
    return f"stgnn/configs/{model}/{dataset}.toml"


def available_configs() -> list[tuple[str, str]]:
    """Every ``(model, dataset)`` with a paper config, sorted."""
    found = []
    for folder in files(__name__).iterdir():
        if folder.is_dir():
            found += [(folder.name, f.name.removesuffix(".toml")) for f in folder.iterdir()
                      if f.name.endswith(".toml") and f.name.removesuffix(".toml") in DATASETS]
    return sorted(found)


def paper_config_raw(model: str, dataset: str) -> dict[str, Any] | None:
    """The raw (not yet validated) table of a paper config; ``None`` when there is none."""
    resource = _file(model, dataset)
    if not resource.is_file():
        return None
    return parse_toml(resource.read_text(), paper_config_name(model, dataset))


def paper_config(model: str, dataset: str, base: RunConfig | None = None) -> RunConfig | None:
    """The paper config of ``model`` on ``dataset`` laid over ``base``; ``None`` when there is none.

    Raises:
        ConfigError: The shipped file does not fit the schema (a packaging bug).
    """
    raw = paper_config_raw(model, dataset)
    if raw is None:
        return None
    merged = merge(base or RunConfig(), raw)
    merged["model"], merged["dataset"] = model, dataset
    return RunConfig.from_dict(merged, source=paper_config_name(model, dataset))
