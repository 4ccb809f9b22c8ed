"""``stgnn datasets convert``: any supported source into the memory-mapped on-disk format.

Sources, and how much of each is in memory at once:

* a registered benchmark (``metr-la``, ``pems-bay``, ``pems0X``, ...): read by its reader, exactly
  as training reads it (digests checked, graph reordered to the series' columns), then written in
  chunks.  These files are loaded whole: the pandas HDF5 *fixed* format of METR-LA / PEMS-BAY and
  the zipped ``.npz`` archives of PEMS0X cannot be read in slices without loading them (the largest,
  PEMS-BAY, is 68 MB as float32);
* your own readings table (CSV / Parquet) with one graph description: read by
  :func:`~stgnn.data.custom.load_custom` with all its checks (gaps, off-grid timestamps, sentinels),
  which needs the whole table once to find the sampling grid, then written in chunks;
* data that never fits in memory: write it chunk by chunk with
  :class:`~stgnn.data.ondisk.SeriesWriter` (``experiments/large/generate.py`` does so for a
  LargeST-sized series).
"""

from __future__ import annotations

import os
from pathlib import Path

from stgnn.data.custom import load_custom
from stgnn.data.ondisk import write_converted
from stgnn.data.readers import load_dataset
from stgnn.data.registry import DATASETS

__all__ = ["convert"]

PathLike = str | os.PathLike[str]


def convert(
    source: str,
    output: PathLike,
    *,
    root: PathLike | None = None,
    locations: PathLike | None = None,
    distances: PathLike | None = None,
    edges: PathLike | None = None,
    adjacency: PathLike | None = None,
    zero_is_missing: bool = False,
    steps_per_chunk: int | None = None,
) -> Path:
    """Convert a registered dataset or your own readings table into ``output``.

    Args:
        source: A registered dataset name, or a CSV / Parquet readings table.
        output: The new folder (it must not exist or be empty).
        root: Data root of registered datasets (default ``$STGNN_DATA``, else ``./datasets``).
        locations: For a readings table: sensor coordinates (k-nearest-neighbour graph).
        distances: For a readings table: road distances ``from,to,cost``.
        edges: For a readings table: an edge list ``from,to[,weight]``.
        adjacency: For a readings table: a dense adjacency CSV.
        zero_is_missing: For a readings table: exact zeros are missing readings.
        steps_per_chunk: Steps written at a time (default about 64 MiB of readings).

    Returns:
        The output folder.

    Raises:
        ValueError: A graph file with a registered dataset, or a readings table without exactly
            one graph file; the underlying readers' errors name the file.
        FileExistsError: ``output`` holds files.
    """
    graph = {k: v for k, v in dict(locations=locations, distances=distances, edges=edges,
                                   adjacency=adjacency).items() if v is not None}
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder; give a new --output")
    if source in DATASETS:
        if graph or zero_is_missing:
            raise ValueError(f"{source}: a registered dataset has its own graph and missing-value rule; "
                             f"{', '.join(graph) or 'zero_is_missing'} applies to your own readings table only")
        dataset = load_dataset(source, root)
    else:
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: neither a registered dataset ({', '.join(DATASETS)}) nor a file")
        dataset = load_custom(source, locations=locations, distances=distances, edges=edges, adjacency=adjacency,
                              zero_is_missing=zero_is_missing)
    return write_converted(dataset, out, steps_per_chunk=steps_per_chunk)
