"""Turning distances, coordinates and edge rows into edge weights.

The arithmetic behind :class:`~stgnn.data.graph.SensorGraph`'s builders: the DCRNN and STGCN
Gaussian kernels, nearest-neighbour and radius graphs over sensor coordinates (scipy's k-d tree
on unit vectors: chord length orders points exactly as great-circle distance does), and the
edge-list helpers (index parsing, weights, symmetrisation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree

from stgnn.data.graph_io import _normalize_id, _warn
from stgnn.data.preview import preview

__all__ = ["Kernel", "WeightMode", "coordinate_edges"]

Kernel = Literal["dcrnn", "stgcn"]
WeightMode = Literal["cost", "binary", "inverse"]

_DCRNN_THRESHOLD = 0.1
# STGCN's weight_matrix(): w = exp(-(d / 10000)^2 / sigma2) with sigma2 = 0.1, kept where
# w >= epsilon = 0.5.  That is exp(-(d / sigma)^2) with sigma = 10000 * sqrt(0.1) metres.
_STGCN_SIGMA = 10000.0 * math.sqrt(0.1)
_STGCN_EPSILON = 0.5
_EARTH_RADIUS_KM = 6371.0088


def _check_square(matrix: np.ndarray | sp.spmatrix | sp.sparray, label: str) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{label}: matrix is not square: shape {tuple(matrix.shape)}")
    if matrix.shape[0] == 0:
        raise ValueError(f"{label}: matrix is empty")


def _check_values(values: np.ndarray, label: str, *, allow_inf: bool, what: str) -> None:
    """Reject NaN (and infinities unless ``allow_inf``) and negative entries."""
    bad = np.isnan(values) if allow_inf else ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if allow_inf else "non-finite"
        raise ValueError(f"{label}: {int(bad.sum())} {kind} entries in the {what}")
    negative = values < 0
    if negative.any():
        raise ValueError(f"{label}: negative {what} in {int(negative.sum())} entries "
                         f"(smallest {values[negative].min():g})")


def _gaussian_kernel(
    dist: np.ndarray, kernel: Kernel, sigma: float | None, threshold: float | None, label: str
) -> np.ndarray:
    """``w = exp(-(d / sigma)^2)`` with entries below ``threshold`` set to 0; ``inf`` -> 0.

    ``"dcrnn"``: sigma = std of the finite distances, threshold 0.1, diagonal as given.
    ``"stgcn"``: sigma = 10000 * sqrt(0.1) (metres), threshold 0.5, zero diagonal.
    """
    if kernel == "dcrnn":
        finite = dist[np.isfinite(dist)]
        sigma = float(finite.std()) if sigma is None and finite.size else sigma
        threshold = _DCRNN_THRESHOLD if threshold is None else threshold
    elif kernel == "stgcn":
        sigma = _STGCN_SIGMA if sigma is None else sigma
        threshold = _STGCN_EPSILON if threshold is None else threshold
    else:
        raise ValueError(f"{label}: unknown kernel {kernel!r}; expected 'dcrnn' or 'stgcn'")
    if sigma is None or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{label}: the kernel width sigma must be positive and finite, got "
                         f"{sigma} (with kernel='dcrnn' it is the std of the distances; pass "
                         "sigma (config [custom] sigma, --sigma) when they are all equal)")
    if not 0 <= threshold <= 1:
        raise ValueError(f"{label}: threshold must lie in [0, 1], got {threshold}")
    weights = np.exp(-np.square(dist / sigma))
    weights[weights < threshold] = 0.0
    if kernel == "stgcn":
        np.fill_diagonal(weights, 0.0)
    return weights



def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``[N, 3]`` points on the unit sphere for latitudes / longitudes in degrees."""
    phi, lam = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)


def _chord_to_km(chord: np.ndarray) -> np.ndarray:
    """Great-circle distance in km for a chord length on the unit sphere."""
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0.0, 1.0))


def coordinate_edges(
    lat: np.ndarray,
    lon: np.ndarray,
    ids: Sequence[str],
    *,
    k: int | None,
    radius_km: float | None,
    sigma: float | None,
    threshold: float | None,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(src, dst, weight)`` of a k-nearest-neighbour or radius graph over coordinates.

    See :meth:`stgnn.data.graph.SensorGraph.from_coordinates` for the meaning of the arguments.
    """
    n = lat.shape[0]
    if (k is None) == (radius_km is None):
        raise ValueError(f"{label}: pass exactly one of k and radius_km")
    points = _unit_vectors(lat, lon)
    tree = cKDTree(points)
    if k is not None:
        if not 1 <= k <= n - 1:
            raise ValueError(f"{label}: k must lie in [1, {n - 1}], got {k}")
        _, found = tree.query(points, k=k + 1)
        # Drop each point itself (the first hit unless other sensors share its location).
        rows = [[j for j in hits if j != i][:k] for i, hits in enumerate(found.tolist())]
        src, dst = np.repeat(np.arange(n), k), np.array(rows, dtype=np.int64).reshape(-1)
    else:
        assert radius_km is not None
        if not radius_km > 0:
            raise ValueError(f"{label}: radius_km must be positive, got {radius_km}")
        chord = 2 * math.sin(min(radius_km / (2 * _EARTH_RADIUS_KM), math.pi / 2))
        pairs = tree.query_pairs(chord * (1 + 1e-12), output_type="ndarray")
        src, dst = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    kept = _chord_to_km(np.linalg.norm(points[src] - points[dst], axis=1))
    if radius_km is not None:
        inside = kept <= radius_km
        src, dst, kept = src[inside], dst[inside], kept[inside]
    width = float(kept.std()) if sigma is None and kept.size else sigma
    if width is None or not math.isfinite(width) or width <= 0:
        raise ValueError(f"{label}: the kernel width sigma must be positive, got {width} "
                         "(all kept distances equal?); pass sigma (config [custom] sigma, --sigma)")
    weights = np.exp(-np.square(kept / width))
    if threshold is None:
        threshold = 0.0 if k is not None else _DCRNN_THRESHOLD
    keep = weights >= threshold
    if k is not None:
        alone = np.setdiff1d(np.arange(n), np.concatenate([src[keep], dst[keep]]))
        if alone.size:
            _warn(f"{label}: threshold={threshold:g} drops all {k} nearest-neighbour edges of "
                  f"{alone.size} sensors, which are left isolated: {preview([ids[i] for i in alone])}; "
                  f"their neighbours are far compared with sigma={width:g} km; leave threshold "
                  "unset (0) to keep every sensor's k edges")
    return src[keep], dst[keep], weights[keep]


def _ids_from_map(id_map: Mapping[Any, int], label: str) -> list[str]:
    """Node ids in index order from an id -> index mapping."""
    ids = [_normalize_id(key) for key in id_map]
    positions = [int(value) for value in id_map.values()]
    if sorted(positions) != list(range(len(positions))):
        raise ValueError(f"{label}: id_map values must be the indices 0..{len(ids) - 1}, "
                         "each once")
    ordered = [""] * len(ids)
    for sensor, position in zip(ids, positions, strict=True):
        ordered[position] = sensor
    return ordered


def _indices(
    src_ids: np.ndarray, dst_ids: np.ndarray, num_nodes: int | None, label: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse 0-based node indices and check them against ``num_nodes``."""
    both = np.concatenate([src_ids, dst_ids])
    numbers = pd.to_numeric(pd.Series(both), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers < 0) | (numbers != np.round(numbers))
    if bad.any():
        raise ValueError(
            f"{label}: endpoints must be 0-based node indices when node_ids is None; "
            f"{int(bad.sum())} are not: {preview(list(pd.unique(both[bad])))} "
            "(pass node_ids= for sensor ids)"
        )
    indices = numbers.astype(np.int64)
    n = int(indices.max()) + 1 if num_nodes is None else num_nodes
    outside = indices >= n
    if outside.any():
        raise ValueError(f"{label}: {int(outside.sum())} endpoints are outside the node "
                         f"range [0, {n}): {preview(sorted(set(indices[outside].tolist())))}")
    return indices[: len(src_ids)], indices[len(src_ids):], n


def _edge_values(
    src: np.ndarray,
    dst: np.ndarray,
    cost: np.ndarray | None,
    ids: Sequence[str],
    weight: WeightMode,
    label: str,
) -> np.ndarray:
    if weight == "binary" or cost is None:
        return np.ones(len(src))
    if weight == "inverse":
        zero = np.flatnonzero(cost == 0)
        if zero.size:
            pairs = [f"{ids[src[i]]}->{ids[dst[i]]}" for i in zero]
            raise ValueError(f"{label}: weight='inverse' needs positive costs; "
                             f"{zero.size} edges have cost 0: {preview(pairs)}")
        return 1.0 / cost
    return cost


def _symmetrize(
    src: np.ndarray, dst: np.ndarray, values: np.ndarray, ids: Sequence[str], label: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add reverse edges; a reverse edge already present must carry the same weight."""
    frame = pd.DataFrame({
        "src": np.concatenate([src, dst]),
        "dst": np.concatenate([dst, src]),
        "w": np.concatenate([values, values]),
    }).drop_duplicates()
    clash = frame.duplicated(subset=["src", "dst"], keep=False)
    if clash.any():
        pairs = frame.loc[clash & (frame["src"] < frame["dst"]), ["src", "dst"]]
        shown = [f"{ids[s]}<->{ids[d]}" for s, d in pairs.drop_duplicates()
                 .itertuples(index=False)]
        raise ValueError(f"{label}: symmetric=True but {len(shown)} edges are listed in "
                         f"both directions with different costs: {preview(shown)}")
    return frame["src"].to_numpy(), frame["dst"].to_numpy(), frame["w"].to_numpy()

