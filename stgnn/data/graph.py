"""The sensor graph: node ids plus PyG-style edges, built from every canonical graph format.

:class:`SensorGraph` is the one place where graphs are built and converted between layouts
(dense, scipy sparse, torch sparse, networkx, PyG).  The files are read in
:mod:`stgnn.data.graph_io`; kernels and neighbourhoods are computed in
:mod:`stgnn.data.graph_kernels`.  Its convention is DCRNN's
``adj_mx``: a dense matrix ``W`` is the set of edges ``i -> j`` with weight ``W[i, j]``
(row = source), and ``edge_index[0]`` holds the sources (PyG's convention).

Formats covered:

* DCRNN ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` (:meth:`SensorGraph.from_adj_pickle`, loaded
  without running code, see :mod:`stgnn.data.safe_pickle`),
* DCRNN distance lists ``from,to,cost`` with or without a header
  (:meth:`SensorGraph.from_distances`, thresholded Gaussian kernel),
* ASTGCN edge lists ``PEMS0x.csv`` by index or by sensor id (:meth:`SensorGraph.from_edge_list`),
* dense matrices: T-GCN's ``los_adj.csv`` (:meth:`SensorGraph.from_dense_csv`) and STGCN's
  ``PeMSD7_W_228.csv`` distances (:meth:`SensorGraph.from_distance_matrix`),
* sensor coordinates (:meth:`SensorGraph.from_coordinates`) and networkx graphs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from stgnn.data.graph_io import (
    _as_dense_array,
    _coordinates_array,
    _default_ids,
    _edge_table,
    _merge_duplicates,
    _node_id_list,
    _normalize_id,
    _warn,
    coordinates_table,
    read_dense_csv,
)
from stgnn.data.graph_kernels import (
    Kernel,
    WeightMode,
    _check_square,
    _check_values,
    _edge_values,
    _gaussian_kernel,
    _ids_from_map,
    _indices,
    _symmetrize,
    coordinate_edges,
)
from stgnn.data.preview import SHOWN, preview
from stgnn.data.safe_pickle import load_adj_pickle

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = ["Kernel", "SelfLoopPolicy", "SensorGraph", "WeightMode"]

PathLike = str | os.PathLike[str]
SelfLoopPolicy = Literal["keep", "remove", "add"]


def _as_tensor(value: Tensor | np.ndarray | Sequence[Any], dtype: torch.dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(device="cpu", dtype=dtype)
    return torch.tensor(np.asarray(value), dtype=dtype)  # a copy: pandas arrays may be read-only


class SensorGraph:
    """A static sensor network: node ids, ``edge_index`` and ``edge_weight`` (PyG layout).

    Edges are stored sorted by (source, target) and unique.  A dense matrix ``W`` corresponds
    to the edges ``i -> j`` with weight ``W[i, j]`` (row = source), as in DCRNN's ``adj_mx``.
    Zero entries of a dense matrix are not edges; an edge list may hold explicit zero weights.

    Args:
        node_ids: Sensor ids, one per node, in node order (stored as ``str``).
        edge_index: ``[2, E]`` integer tensor or array; row 0 = source.
        edge_weight: ``[E]`` non-negative finite weights; ``None`` means all ones.
        coordinates: Optional ``[N, 2]`` (latitude, longitude) in degrees.
        source: Where the graph came from (a file name), used in messages.

    Attributes:
        node_ids: ``list[str]`` of length ``N``.
        edge_index: ``[2, E]`` ``torch.long``.
        edge_weight: ``[E]`` ``torch.float32``.
        coordinates: ``[N, 2]`` ``torch.float64`` (latitude, longitude) or ``None``.
        source: ``str`` or ``None``.

    Raises:
        ValueError: Shapes disagree, an index is out of range, an edge repeats, a weight is
            negative or not finite, or an id repeats.

    Example:
        >>> g = SensorGraph(["a", "b"], torch.tensor([[0], [1]]), torch.tensor([0.5]))
        >>> g
        SensorGraph(num_nodes=2, num_edges=1, source=None)
        >>> g.to_dense()
        array([[0. , 0.5],
               [0. , 0. ]], dtype=float32)
    """

    def __init__(
        self,
        node_ids: Sequence[Any],
        edge_index: Tensor | np.ndarray,
        edge_weight: Tensor | np.ndarray | None = None,
        *,
        coordinates: Tensor | np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        self.source = source
        self.node_ids = _node_id_list(node_ids, self._label)
        index = _as_tensor(edge_index, torch.long)
        if index.numel() == 0:
            index = index.reshape(2, 0)
        weight = (torch.ones(index.shape[-1], dtype=torch.float32) if edge_weight is None
                  else _as_tensor(edge_weight, torch.float32).reshape(-1))
        self.edge_index, self.edge_weight = self._sorted_edges(index, weight)
        self.coordinates = (None if coordinates is None
                            else _as_tensor(coordinates, torch.float64))
        self.validate()

    # ---------------------------------------------------------------- invariants

    @property
    def _label(self) -> str:
        return self.source or "SensorGraph"

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N``."""
        return len(self.node_ids)

    @property
    def num_edges(self) -> int:
        """Number of edges ``E`` (self loops included)."""
        return int(self.edge_index.shape[1])

    def _sorted_edges(self, index: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Check shapes and range, sort by (source, target) and reject repeated edges."""
        n = len(self.node_ids)
        if index.ndim != 2 or index.shape[0] != 2:
            raise ValueError(f"{self._label}: edge_index must have shape [2, E], "
                             f"got {list(index.shape)}")
        if weight.shape[0] != index.shape[1]:
            raise ValueError(f"{self._label}: {weight.shape[0]} edge weights for "
                             f"{index.shape[1]} edges")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"{self._label}: edge_index holds node indices outside [0, {n})")
        key = index[0] * n + index[1]
        order = torch.argsort(key, stable=True)
        key, index, weight = key[order], index[:, order], weight[order]
        repeated = torch.nonzero(key[1:] == key[:-1]).flatten()
        if repeated.numel():
            pairs = [f"{self.node_ids[int(index[0, i])]}->{self.node_ids[int(index[1, i])]}"
                     for i in repeated[:SHOWN]]
            raise ValueError(f"{self._label}: {repeated.numel()} repeated edges: "
                             f"{preview(pairs)}")
        return index.contiguous(), weight.contiguous()

    def validate(self) -> None:
        """Check the invariants; warn about isolated nodes.

        Raises ``ValueError`` when a stored tensor has the wrong shape, an index is out of
        range, edges are unsorted or repeated, a weight is negative or not finite, or the
        coordinates are malformed.  Warns (``UserWarning``, one message with the count and
        the first ids) when nodes have no edge to or from another node: such a node gets no
        information from its neighbours in a graph convolution.

        Raises:
            ValueError: An invariant does not hold.

        Example:
            >>> SensorGraph(["a", "b"], torch.tensor([[0], [0]]))  # doctest: +SKIP
            UserWarning: SensorGraph: 2 isolated nodes ...
        """
        label, n = self._label, self.num_nodes
        index, weight = self.edge_index, self.edge_weight
        if index.dtype != torch.long or index.ndim != 2 or index.shape[0] != 2:
            raise ValueError(f"{label}: edge_index must be a [2, E] long tensor")
        if weight.dtype != torch.float32 or weight.shape != (index.shape[1],):
            raise ValueError(f"{label}: edge_weight must be a [E] float32 tensor")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"{label}: edge_index holds node indices outside [0, {n})")
        key = index[0] * n + index[1]
        if bool((key[1:] <= key[:-1]).any()):
            raise ValueError(f"{label}: edges are not sorted by (source, target) and unique")
        if not bool(torch.isfinite(weight).all()):
            raise ValueError(f"{label}: {int((~torch.isfinite(weight)).sum())} non-finite "
                             "edge weights")
        if bool((weight < 0).any()):
            raise ValueError(f"{label}: {int((weight < 0).sum())} negative edge weights")
        if self.coordinates is not None:
            coords = self.coordinates
            if coords.shape != (n, 2):
                raise ValueError(f"{label}: coordinates must have shape [{n}, 2], "
                                 f"got {list(coords.shape)}")
            if not bool(torch.isfinite(coords).all()):
                raise ValueError(f"{label}: coordinates hold non-finite values")
        off_diagonal = index[:, index[0] != index[1]]
        degree = torch.bincount(off_diagonal.flatten(), minlength=n)
        isolated = [self.node_ids[i] for i in torch.nonzero(degree == 0).flatten().tolist()]
        if isolated:
            plural = "s" if len(isolated) > 1 else ""
            _warn(f"{label}: {len(isolated)} isolated node{plural} (no edge to or from another "
                  f"node): {preview(isolated)}")

    def __repr__(self) -> str:
        return (f"SensorGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"source={self.source!r})")

    # ---------------------------------------------------------------- constructors

    @classmethod
    def _from_coo(
        cls,
        node_ids: Sequence[str],
        src: np.ndarray,
        dst: np.ndarray,
        weight: np.ndarray | None,
        *,
        coordinates: np.ndarray | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        index = np.stack([np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)])
        return cls(node_ids, index, weight, coordinates=coordinates, source=source)

    @classmethod
    def from_dense(
        cls,
        matrix: np.ndarray | sp.spmatrix | sp.sparray | Tensor,
        node_ids: Sequence[Any] | None = None,
        *,
        source: str | None = None,
    ) -> SensorGraph:
        """Build a graph from a weighted adjacency matrix (nonzero ``W[i, j]`` = edge i -> j).

        Args:
            matrix: ``[N, N]`` weights as a numpy array, a (sparse) tensor or a scipy sparse
                matrix; square, finite and non-negative.  Zeros are not edges.
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.
            source: Name used in messages (e.g. the file the matrix came from).

        Returns:
            The graph, with edges sorted by (source, target).

        Raises:
            ValueError: The matrix is not square, holds non-finite or negative entries, or
                ``node_ids`` has the wrong length (the message names ``source``).

        Example:
            >>> g = SensorGraph.from_dense(np.array([[1.0, 0.5], [0.0, 1.0]]), ["a", "b"])
            >>> g.edge_index.tolist(), g.edge_weight.tolist()
            ([[0, 0, 1], [0, 1, 1]], [1.0, 0.5, 1.0])
        """
        label = source or "matrix"
        if isinstance(matrix, Tensor):
            matrix = matrix.detach().cpu()
            matrix = (matrix.to_dense() if matrix.is_sparse else matrix).numpy()
        if sp.issparse(matrix):
            _check_square(matrix, label)
            coo = sp.coo_matrix(matrix, dtype=np.float64)
            _check_values(coo.data, label, allow_inf=False, what="weights")
            coo.sum_duplicates()
            coo.eliminate_zeros()
            src, dst, weight = coo.row, coo.col, coo.data
        else:
            dense = _as_dense_array(matrix, label)
            _check_square(dense, label)
            _check_values(dense, label, allow_inf=False, what="weights")
            src, dst = np.nonzero(dense)
            weight = dense[src, dst]
        n = matrix.shape[0]
        ids = _default_ids(n) if node_ids is None else list(node_ids)
        if len(ids) != n:
            raise ValueError(f"{label}: {len(ids)} node ids for a {n}x{n} matrix")
        return cls._from_coo(ids, src, dst, weight, source=source)

    @classmethod
    def from_dense_csv(
        cls, path: PathLike, node_ids: Sequence[Any] | None = None
    ) -> SensorGraph:
        """Read a headerless comma-separated weight matrix such as T-GCN's ``los_adj.csv``.

        Args:
            path: The CSV file: ``N`` lines of ``N`` numbers, no header, no index column.
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.

        Returns:
            The graph (see :meth:`from_dense`), with ``source`` = the file name.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: The file is not a numeric matrix, or the matrix is invalid (see
                :meth:`from_dense`); the message names the file.

        Example:
            >>> g = SensorGraph.from_dense_csv("datasets/los-loop/los_adj.csv")  # doctest: +SKIP
            >>> g.num_nodes  # doctest: +SKIP
            207
        """
        matrix = read_dense_csv(path)
        return cls.from_dense(matrix, node_ids, source=str(path))

    @classmethod
    def from_distance_matrix(
        cls,
        matrix: PathLike | np.ndarray,
        node_ids: Sequence[Any] | None = None,
        *,
        kernel: Kernel = "dcrnn",
        threshold: float | None = None,
        sigma: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Turn a dense ``[N, N]`` road-distance matrix into weights with a Gaussian kernel.

        ``w_ij = exp(-(d_ij / sigma)^2)``, set to 0 below ``threshold``; ``inf`` = no path.

        * ``kernel="dcrnn"`` (DCRNN's ``gen_adj_mx.py``): ``sigma`` defaults to the standard
          deviation of the finite distances, ``threshold`` to 0.1; the diagonal is kept.
        * ``kernel="stgcn"`` (STGCN's ``weight_matrix``, distances in metres): ``sigma``
          defaults to ``10000 * sqrt(0.1)`` m, i.e. ``exp(-(d / 10^4)^2 / 0.1)``,
          ``threshold`` (STGCN's epsilon) to 0.5; the diagonal is zero.

        Args:
            matrix: The distances, or a headerless CSV file of them (``PeMSD7_W_228.csv``).
            node_ids: Sensor ids in row order; default ``"0" .. "N-1"``.
            kernel: ``"dcrnn"`` or ``"stgcn"``.
            threshold: Weights below it become 0; default per kernel (above).
            sigma: Kernel width in the units of the distances; default per kernel (above).
            source: Name used in messages; default the file path.

        Returns:
            The directed graph (symmetric when the distances are).

        Raises:
            FileNotFoundError: ``matrix`` is a path that does not exist.
            ValueError: Not square, NaN or negative distances, bad ``kernel``, ``sigma`` or
                ``threshold``; the message names the file or ``source``.

        Example:
            >>> g = SensorGraph.from_distance_matrix(
            ...     "datasets/pemsd7m/PeMSD7_W_228.csv", kernel="stgcn")  # doctest: +SKIP
            >>> g.num_nodes  # doctest: +SKIP
            228
        """
        if isinstance(matrix, (str, os.PathLike)):
            label = source or str(matrix)
            dist = read_dense_csv(matrix)
        else:
            label = source or "distance matrix"
            dist = _as_dense_array(matrix, label)
        _check_square(dist, label)
        _check_values(dist, label, allow_inf=True, what="distances")
        weights = _gaussian_kernel(dist, kernel, sigma, threshold, label)
        return cls.from_dense(weights, node_ids, source=label)

    @classmethod
    def from_distances(
        cls,
        distances: PathLike | pd.DataFrame,
        node_ids: Sequence[Any],
        *,
        kernel: Kernel = "dcrnn",
        threshold: float | None = None,
        sigma: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Build DCRNN's thresholded Gaussian-kernel graph from ``from,to,cost`` distances.

        Reproduces ``get_adjacency_matrix`` of DCRNN's ``gen_adj_mx.py``: an ``[N, N]``
        distance matrix starts at ``inf``; each row with both ids in ``node_ids`` sets
        ``dist[from, to] = cost`` (directed, not symmetrised; a repeated pair keeps its last
        row, with a warning); then :meth:`from_distance_matrix`'s kernel applies.  Self pairs
        of cost 0 give diagonal weights of 1, as in ``adj_mx.pkl``.

        Args:
            distances: A CSV file (with a ``from,to,cost`` header as in
                ``distances_la_2012.csv`` or without one as in ``distances_bay_2017.csv``;
                detected) or a DataFrame whose first three columns are from, to, cost.
            node_ids: The graph's sensor ids, in node order (e.g. ``graph_sensor_ids.txt``).
                Rows naming other sensors are ignored.
            kernel: ``"dcrnn"`` (default) or ``"stgcn"``, see :meth:`from_distance_matrix`.
            threshold: Weights below it become 0; default 0.1 (dcrnn) / 0.5 (stgcn).
            sigma: Kernel width; default the std (ddof 0) of the finite distances (dcrnn).
            source: Name used in messages; default the path.

        Returns:
            The graph; ``to_dense()`` equals DCRNN's ``adj_mx`` to float32 precision.

        Raises:
            FileNotFoundError: ``distances`` is a path that does not exist.
            ValueError: The file cannot be parsed, a cost is missing or negative, or no row
                connects two of ``node_ids``.

        Example:
            >>> bay = "datasets/pems-bay/"
            >>> ids, _, adj = load_adj_pickle(bay + "adj_mx_bay.pkl")  # doctest: +SKIP
            >>> csv = bay + "distances_bay_2017.csv"
            >>> g = SensorGraph.from_distances(csv, ids)  # doctest: +SKIP
            >>> np.allclose(g.to_dense(), adj, atol=1e-5)  # doctest: +SKIP
            True
        """
        src_ids, dst_ids, cost, label = _edge_table(distances, source, "distance list")
        if cost is None:
            raise ValueError(f"{label}: expected columns from,to,cost; there is no cost column")
        ids = _node_id_list(node_ids, label)
        position = pd.Index(ids)
        src, dst = position.get_indexer(src_ids), position.get_indexer(dst_ids)
        known = (src >= 0) & (dst >= 0)
        if not known.any():
            raise ValueError(
                f"{label}: none of its {len(src_ids)} rows connects two of the {len(ids)} "
                f"given node ids (file ids such as {preview(list(src_ids[:3]))}; node ids "
                f"such as {preview(ids[:3])})"
            )
        src, dst, cost = _merge_duplicates(src[known], dst[known], cost[known], ids, label,
                                           on_conflict="last")
        assert cost is not None
        dist = np.full((len(ids), len(ids)), np.inf)
        dist[src, dst] = cost
        return cls.from_distance_matrix(dist, ids, kernel=kernel, threshold=threshold,
                                        sigma=sigma, source=label)

    @classmethod
    def from_edge_list(
        cls,
        edges: PathLike | pd.DataFrame,
        node_ids: Sequence[Any] | None = None,
        *,
        num_nodes: int | None = None,
        weight: WeightMode = "cost",
        symmetric: bool = False,
        id_map: Mapping[Any, int] | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Read an edge list ``from,to[,cost]`` such as ASTGCN's ``PEMS0x.csv``.

        Exact repeated rows are merged with a warning naming the file and the count
        (``PEMS08.csv`` repeats 18 of its 295 rows); a pair listed twice with different costs
        raises.

        Args:
            edges: A CSV file (header detected) or DataFrame; columns 1-2 are the endpoints,
                an optional column 3 the cost (e.g. ``cost`` or ``distance``).
            node_ids: The sensor ids in node order, when the endpoints are sensor ids
                (``PEMS03.csv`` with :func:`read_sensor_ids` of ``PEMS03.txt``).  ``None``: the
                endpoints are 0-based node indices (``PEMS04/07/08``).
            num_nodes: Number of nodes when the endpoints are indices; default max index + 1.
            weight: ``"cost"`` (the cost column), ``"binary"`` (1 for every edge) or
                ``"inverse"`` (1 / cost; costs must be positive).
            symmetric: Also add every reverse edge (a reverse edge already listed must have
                the same cost).
            id_map: Alternative to ``node_ids``: a mapping sensor id -> node index
                (a bijection onto ``0 .. N-1``).
            source: Name used in messages; default the path.

        Returns:
            The graph.

        Raises:
            FileNotFoundError: ``edges`` is a path that does not exist.
            ValueError: The file cannot be parsed; an endpoint is not a known id (or is out of
                range); a pair repeats with another cost; ``weight`` needs a cost column that
                is absent, or ``"inverse"`` meets a zero cost.  Messages name the file.

        Example:
            >>> g = SensorGraph.from_edge_list("datasets/pems04/PEMS04.csv")  # doctest: +SKIP
            >>> g.num_nodes, g.num_edges  # doctest: +SKIP
            (307, 340)
        """
        src_ids, dst_ids, cost, label = _edge_table(edges, source, "edge list")
        if weight not in ("cost", "binary", "inverse"):
            raise ValueError(f"{label}: unknown weight {weight!r}; expected 'cost', "
                             "'binary' or 'inverse'")
        if weight != "binary" and cost is None:
            raise ValueError(f"{label}: weight={weight!r} needs a cost column (a third "
                             "column); use weight='binary' for an unweighted list")
        if id_map is not None:
            if node_ids is not None:
                raise ValueError(f"{label}: pass node_ids or id_map, not both")
            node_ids = _ids_from_map(id_map, label)
        if node_ids is not None:
            ids = _node_id_list(node_ids, label)
            if num_nodes is not None and num_nodes != len(ids):
                raise ValueError(f"{label}: num_nodes={num_nodes} but {len(ids)} node ids")
            position = pd.Index(ids)
            src, dst = position.get_indexer(src_ids), position.get_indexer(dst_ids)
            unknown = pd.unique(np.concatenate([src_ids[src < 0], dst_ids[dst < 0]]))
            if unknown.size:
                raise ValueError(f"{label}: {unknown.size} ids are not among the {len(ids)} "
                                 f"node ids: {preview(list(unknown))}")
        else:
            src, dst, n = _indices(src_ids, dst_ids, num_nodes, label)
            ids = _default_ids(n)
        src, dst, cost = _merge_duplicates(src, dst, cost, ids, label, on_conflict="raise")
        values = _edge_values(src, dst, cost, ids, weight, label)
        if symmetric:
            src, dst, values = _symmetrize(src, dst, values, ids, label)
        return cls._from_coo(ids, src, dst, values, source=label)





    @classmethod
    def from_networkx(
        cls, graph: nx.Graph, weight: str = "weight", *, source: str | None = None
    ) -> SensorGraph:
        """Convert a networkx graph; node order is ``list(graph.nodes)``.

        Node ids come from a ``sensor_id`` node attribute where present (as written by
        :meth:`to_networkx`), otherwise from the node keys; ``latitude``/``longitude``
        attributes on every node become ``coordinates``.  An undirected graph gives both
        directions of each edge.  Edges without the weight attribute get weight 1.

        Args:
            graph: A ``nx.Graph`` or ``nx.DiGraph`` (multigraphs are rejected).
            weight: Edge attribute holding the weight.
            source: Name used in messages.

        Returns:
            The graph.

        Raises:
            ValueError: A multigraph, an empty graph, or invalid weights.

        Example:
            >>> g = SensorGraph.from_networkx(nx.path_graph(3))
            >>> g.num_edges
            4
        """
        label = source or "networkx graph"
        if graph.is_multigraph():
            raise ValueError(f"{label}: multigraphs are not supported; merge parallel edges")
        nodes = list(graph.nodes)
        if not nodes:
            raise ValueError(f"{label}: the graph has no nodes")
        position = {node: i for i, node in enumerate(nodes)}
        ids = [graph.nodes[node].get("sensor_id", node) for node in nodes]
        edges = list(graph.edges(data=weight, default=1.0))
        src = np.array([position[u] for u, _, _ in edges], dtype=np.int64)
        dst = np.array([position[v] for _, v, _ in edges], dtype=np.int64)
        try:
            values = np.array([w for _, _, w in edges], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}: edge attribute {weight!r} is not numeric ({exc})") \
                from exc
        if not graph.is_directed():
            loop = src == dst
            src, dst = np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]])
            values = np.concatenate([values, values[~loop]])
        attrs = [graph.nodes[node] for node in nodes]
        coordinates = (np.array([[a["latitude"], a["longitude"]] for a in attrs])
                       if all("latitude" in a and "longitude" in a for a in attrs) else None)
        return cls._from_coo(ids, src, dst, values, coordinates=coordinates, source=source)

    @classmethod
    def from_coordinates(
        cls,
        coords: pd.DataFrame | np.ndarray,
        node_ids: Sequence[Any] | None = None,
        *,
        k: int | None = None,
        radius_km: float | None = None,
        sigma: float | None = None,
        threshold: float | None = None,
        source: str | None = None,
    ) -> SensorGraph:
        """Build a graph from sensor locations (great-circle distance, Gaussian kernel).

        Each node ``i`` gets edges ``i -> j`` to its ``k`` nearest other sensors, or to every
        other sensor within ``radius_km``; the kept distances ``d`` become weights
        ``exp(-(d / sigma)^2)`` (``sigma`` = std of the kept distances, DCRNN's choice) and
        weights below ``threshold`` are dropped.  No self loops (see :meth:`with_self_loops`).

        With ``k`` the neighbourhood is the sparsifier, so by default every node keeps its
        ``k`` edges (``threshold`` 0): a remote sensor whose nearest neighbours are all far
        away would otherwise lose every edge to the kernel threshold and be isolated.  An
        explicit ``threshold`` that leaves nodes without edges is applied, with a warning
        naming them.

        Args:
            coords: A DataFrame with latitude/longitude columns (``latitude``/``lat`` and
                ``longitude``/``lon``/``lng``, any case) and ids in a ``sensor_id``/``id``
                column or the index; or an ``[N, 2]`` array of (latitude, longitude).
            node_ids: Sensor ids in row order; overrides those found in ``coords``.
            k: Number of nearest neighbours (exactly one of ``k`` and ``radius_km``).
            radius_km: Connection radius in km.
            sigma: Kernel width in km; default the std of the kept distances.
            threshold: Weights below it are dropped; default 0 with ``k`` (every node keeps
                its ``k`` edges) and 0.1 (DCRNN's) with ``radius_km``.
            source: Name used in messages.

        Returns:
            The graph, with ``coordinates`` set.

        Raises:
            ValueError: Missing columns, invalid coordinates, neither or both of ``k`` and
                ``radius_km``, ``k`` outside ``[1, N-1]``, or a zero kernel width.

        Example:
            >>> xy = np.array([[34.0, -118.0], [34.01, -118.0], [34.5, -118.0]])
            >>> SensorGraph.from_coordinates(xy, k=1, threshold=0.0).num_edges
            3
        """
        label = source or "coordinates"
        if isinstance(coords, pd.DataFrame):
            table = coordinates_table(coords, label)
        else:
            table = _coordinates_array(_as_dense_array(coords, label), label)
        if len(table) < 2:
            raise ValueError(f"{label}: needs at least 2 sensors, got {len(table)}")
        lat, lon = table["latitude"].to_numpy(), table["longitude"].to_numpy()
        ids = [str(i) for i in table.index] if node_ids is None else list(node_ids)
        if len(ids) != len(table):
            raise ValueError(f"{label}: {len(ids)} node ids for {len(table)} coordinates")
        src, dst, weights = coordinate_edges(lat, lon, ids, k=k, radius_km=radius_km, sigma=sigma,
                                             threshold=threshold, label=label)
        return cls._from_coo(ids, src, dst, weights, coordinates=np.stack([lat, lon], axis=1), source=source)


    @classmethod
    def from_adj_pickle(cls, path: PathLike) -> SensorGraph:
        """Load DCRNN's ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` without executing pickle code.

        Args:
            path: The pickle of ``[sensor_ids, sensor_id_to_ind, adj_mx]``.

        Returns:
            The graph with the pickle's sensor ids and ``to_dense() == adj_mx``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            stgnn.data.safe_pickle.UnsafePickleError: The file names a forbidden global.
            ValueError: Malformed content (see :func:`load_adj_pickle`) or invalid weights.

        Example:
            >>> SensorGraph.from_adj_pickle("datasets/metr-la/adj_mx.pkl")  # doctest: +SKIP
            SensorGraph(num_nodes=207, num_edges=1722, source='adj_mx.pkl')
        """
        ids, _, adj = load_adj_pickle(path)
        return cls.from_dense(adj, ids, source=str(path))

    # ---------------------------------------------------------------- converters

    def _numpy_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = self.edge_index.numpy()
        return index[0], index[1], self.edge_weight.numpy()

    def to_dense(self) -> np.ndarray:
        """The ``[N, N]`` float32 weight matrix, ``W[source, target]``."""
        src, dst, weight = self._numpy_edges()
        dense = np.zeros((self.num_nodes, self.num_nodes), dtype=np.float32)
        dense[src, dst] = weight
        return dense

    def to_scipy(self) -> sp.csr_matrix:
        """The weight matrix as a float32 ``scipy.sparse.csr_matrix`` (row = source)."""
        src, dst, weight = self._numpy_edges()
        return sp.csr_matrix((weight, (src, dst)), shape=(self.num_nodes, self.num_nodes))

    def to_torch_sparse(self) -> Tensor:
        """The weight matrix as a coalesced float32 sparse COO tensor ``[N, N]``."""
        size = (self.num_nodes, self.num_nodes)
        # The invariants (indices in range, sorted, unique) were checked by validate().
        return torch.sparse_coo_tensor(self.edge_index, self.edge_weight, size,
                                       check_invariants=False).coalesce()

    def to_networkx(self) -> nx.DiGraph:
        """A ``nx.DiGraph`` on nodes ``0 .. N-1`` with ``sensor_id`` (and, where known,
        ``latitude``/``longitude``) node attributes and ``weight`` edge attributes."""
        graph = nx.DiGraph(source=self.source)
        for i, sensor in enumerate(self.node_ids):
            attrs: dict[str, Any] = {"sensor_id": sensor}
            if self.coordinates is not None:
                attrs["latitude"], attrs["longitude"] = self.coordinates[i].tolist()
            graph.add_node(i, **attrs)
        src, dst, weight = self._numpy_edges()
        graph.add_weighted_edges_from(zip(src.tolist(), dst.tolist(), weight.tolist(), strict=True))
        return graph

    def to_pyg(self) -> Data:
        """A ``torch_geometric.data.Data(edge_index, edge_attr=edge_weight, num_nodes=N)``."""
        from torch_geometric.data import Data

        return Data(edge_index=self.edge_index.clone(), edge_attr=self.edge_weight.clone(),
                    num_nodes=self.num_nodes)

    # ---------------------------------------------------------------- derived graphs

    def reorder(self, node_ids: Sequence[Any]) -> SensorGraph:
        """The graph restricted to ``node_ids``, in that order (edges among them kept).

        Args:
            node_ids: Ids of this graph, each at most once (e.g. the series' columns).

        Returns:
            A new graph whose node ``i`` is ``node_ids[i]``.

        Raises:
            ValueError: Some ids are not in the graph (named) or repeat.

        Example:
            >>> g = SensorGraph.from_dense(np.array([[0.0, 2.0], [0.0, 0.0]]), ["a", "b"])
            >>> g.reorder(["b", "a"]).to_dense()
            array([[0., 0.],
                   [2., 0.]], dtype=float32)
        """
        wanted = _node_id_list(node_ids, self._label)
        position = {sensor: i for i, sensor in enumerate(self.node_ids)}
        missing = [sensor for sensor in wanted if sensor not in position]
        if missing:
            raise ValueError(f"{self._label}: {len(missing)} requested ids are not in the "
                             f"graph: {preview(missing)}")
        old = torch.tensor([position[sensor] for sensor in wanted], dtype=torch.long)
        new_of_old = torch.full((self.num_nodes,), -1, dtype=torch.long)
        new_of_old[old] = torch.arange(len(wanted))
        mapped = new_of_old[self.edge_index]
        keep = (mapped >= 0).all(dim=0)
        coordinates = None if self.coordinates is None else self.coordinates[old]
        return SensorGraph(wanted, mapped[:, keep], self.edge_weight[keep],
                           coordinates=coordinates, source=self.source)

    def check_nodes(
        self, sensor_ids: Sequence[Any], source: str | None = None, *, ordered: bool = False
    ) -> None:
        """Check that a series' sensor ids are exactly this graph's nodes.

        Args:
            sensor_ids: The series' sensor ids (e.g. its columns).
            source: Name of the series, for the message.
            ordered: Also require the same order (node ``i`` = column ``i``); by default only
                the sets are compared, so that a caller can :meth:`reorder` afterwards.

        Raises:
            ValueError: The ids differ: the message gives the count and first few of the
                series ids missing from the graph and of the graph ids absent from the series,
                or the first position where the order differs (fix with :meth:`reorder`).

        Example:
            >>> g = SensorGraph.from_dense(np.eye(2), ["a", "b"])
            >>> g.check_nodes(["a", "c"], "speed.csv")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: speed.csv: sensor ids do not match graph SensorGraph: ...
        """
        series = [_normalize_id(sensor) for sensor in sensor_ids]
        label = f"{source or 'series'}: sensor ids do not match graph {self._label}"
        in_graph = set(self.node_ids)
        in_series = set(series)
        not_in_graph = [s for s in series if s not in in_graph]
        not_in_series = [s for s in self.node_ids if s not in in_series]
        problems = []
        if not_in_graph:
            problems.append(f"{len(not_in_graph)} series ids are missing from the graph: "
                            f"{preview(not_in_graph)}")
        if not_in_series:
            problems.append(f"{len(not_in_series)} graph ids are not in the series: "
                            f"{preview(not_in_series)}")
        if len(in_series) != len(series):
            problems.append(f"{len(series) - len(in_series)} series ids repeat")
        if problems:
            raise ValueError(f"{label}: " + "; ".join(problems))
        if ordered and series != self.node_ids:
            pairs = zip(series, self.node_ids, strict=True)
            at = next(i for i, (mine, theirs) in enumerate(pairs) if mine != theirs)
            raise ValueError(f"{label}: same ids in another order (position {at}: series has "
                             f"{series[at]!r}, graph has {self.node_ids[at]!r}); use "
                             "graph.reorder(sensor_ids)")

    def with_self_loops(self, policy: SelfLoopPolicy) -> SensorGraph:
        """Apply an explicit self-loop policy.

        Args:
            policy: ``"keep"`` (return the graph as is), ``"remove"`` (drop ``i -> i``
                edges) or ``"add"`` (add ``i -> i`` with weight 1 where missing; existing
                loops keep their weight, e.g. DCRNN's diagonal).

        Returns:
            The graph under that policy.

        Raises:
            ValueError: Unknown policy.

        Example:
            >>> g = SensorGraph.from_dense(np.array([[0.0, 2.0], [3.0, 0.0]]))
            >>> g.with_self_loops("add").num_edges
            4
        """
        if policy == "keep":
            return self
        from torch_geometric.utils import add_remaining_self_loops, remove_self_loops  # slow import: only here

        if policy == "remove":
            index, weight = remove_self_loops(self.edge_index, self.edge_weight)
        elif policy == "add":
            index, weight = add_remaining_self_loops(self.edge_index, self.edge_weight, fill_value=1.0,
                                                     num_nodes=self.num_nodes)
        else:
            raise ValueError(f"{self._label}: unknown self-loop policy {policy!r}; expected "
                             "'keep', 'remove' or 'add'")
        return SensorGraph(self.node_ids, index, weight, coordinates=self.coordinates,
                           source=self.source)
