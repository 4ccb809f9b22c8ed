"""Load DCRNN's adjacency pickles (``adj_mx.pkl``, ``adj_mx_bay.pkl``) without running code.

``pickle.load`` will call any importable function that a file names, so a plain load of a
downloaded ``.pkl`` can run arbitrary commands.  :func:`load_adj_pickle` uses an unpickler whose
``find_class`` admits only the globals that DCRNN's files reference, checked on the published
files:

* ``numpy.core.multiarray._reconstruct`` (written by numpy 1.x; ``numpy._core.multiarray``
  is the numpy 2 spelling of the same function),
* ``numpy.ndarray`` and ``numpy.dtype``.

The files were written by Python 2 in protocol 0, so they load only with ``encoding="latin1"``.
The same structure re-saved by Python 3 in protocols 0-2 (as DCRNN's ``gen_adj_mx.py`` does
when run under Python 3) stores the array bytes through ``_codecs.encode(text, "latin1")``;
that name resolves to a stand-in that only turns a ``str`` into ``bytes`` and refuses any
other argument.  numpy's ``_frombuffer`` (protocol 5) is refused: re-save such a file with
``pickle.dump(obj, f, protocol=4)``.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UnsafePickleError", "load_adj_pickle"]


class UnsafePickleError(ValueError):
    """Raised when a pickle names a global outside the allow-list."""


def _numpy_reconstruct() -> Callable[..., Any]:
    """Return numpy's ``_reconstruct`` without importing the deprecated ``numpy.core``."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy provides no multiarray._reconstruct")  # pragma: no cover


_RECONSTRUCT = _numpy_reconstruct()


def _latin1_bytes(text: object, encoding: object = "utf-8") -> bytes:
    """The only use of ``_codecs.encode`` in an array pickle: ``str`` -> ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode called with {type(text).__name__}, {encoding!r}")
    return text.encode("latin1")


# (module, name) -> object.  The objects are resolved here, never by importing what a file names.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _AdjUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_ALLOWED``."""

    def __init__(self, file: Any, label: str) -> None:
        super().__init__(file, encoding="latin1")
        self._label = label

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._label}: refuses to load global '{module}.{name}' "
                "(only numpy array reconstruction is allowed in an adjacency pickle)"
            ) from None


def load_adj_pickle(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Load a DCRNN adjacency pickle safely and check its structure.

    Args:
        path: A pickle holding ``[sensor_ids, sensor_id_to_ind, adj_mx]`` as DCRNN's
            ``gen_adj_mx.py`` writes it.

    Returns:
        ``(sensor_ids, sensor_id_to_ind, adj_mx)``: the ids as ``str``, the id -> row mapping
        (equal to ``{s: i for i, s in enumerate(sensor_ids)}``) and the ``[N, N]`` floating
        matrix (row = source sensor), as stored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: The file names a global outside the allow-list; nothing it names
            is called.
        ValueError: The file is not a readable pickle, or its content is not the structure
            above (the message names the file and the problem).

    Example:
        >>> ids, index, adj = load_adj_pickle("datasets/metr-la/adj_mx.pkl")  # doctest: +SKIP
        >>> len(ids), adj.shape  # doctest: +SKIP
        (207, (207, 207))
    """
    file = Path(path)
    label = str(path)
    if not file.is_file():
        raise FileNotFoundError(f"{label}: adjacency pickle not found")
    try:
        with file.open("rb") as handle:
            content = _AdjUnpickler(handle, label).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"{label}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    return _check_structure(content, label)


def _check_structure(content: object, label: str) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Check ``[sensor_ids, sensor_id_to_ind, adj_mx]`` and return it as a typed tuple."""
    expected = "expected [sensor_ids, sensor_id_to_ind, adj_mx]"
    if not isinstance(content, (list, tuple)) or len(content) != 3:
        kind = f"a {type(content).__name__}"
        if isinstance(content, (list, tuple)):
            kind += f" of length {len(content)}"
        raise ValueError(f"{label}: {expected}, found {kind}")
    ids, index, adj = content
    if not isinstance(ids, (list, tuple)) or not all(isinstance(s, str) for s in ids):
        raise ValueError(f"{label}: sensor_ids must be a list of str, found {type(ids).__name__}"
                         + (" with non-str items" if isinstance(ids, (list, tuple)) else ""))
    if len(set(ids)) != len(ids):
        raise ValueError(f"{label}: sensor_ids holds {len(ids) - len(set(ids))} repeated ids")
    if not isinstance(index, dict):
        raise ValueError(f"{label}: sensor_id_to_ind must be a dict, found {type(index).__name__}")
    expected_index = {sensor: i for i, sensor in enumerate(ids)}
    if index != expected_index:
        wrong = [k for k in index if expected_index.get(k) != index[k]]
        absent = [k for k in expected_index if k not in index]
        raise ValueError(
            f"{label}: sensor_id_to_ind does not match sensor_ids "
            f"({len(wrong)} entries disagree, e.g. {wrong[:3]!r}; "
            f"{len(absent)} ids missing, e.g. {absent[:3]!r})"
        )
    if not isinstance(adj, np.ndarray):
        raise ValueError(f"{label}: adj_mx must be a numpy array, found {type(adj).__name__}")
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"{label}: adj_mx must be a square 2-D matrix, found {adj.shape}")
    if adj.shape[0] != len(ids):
        raise ValueError(
            f"{label}: adj_mx is {adj.shape[0]}x{adj.shape[1]} but there are {len(ids)} sensor ids"
        )
    if not np.issubdtype(adj.dtype, np.floating):
        raise ValueError(f"{label}: adj_mx must hold floats, found dtype {adj.dtype}")
    return list(ids), dict(index), adj
