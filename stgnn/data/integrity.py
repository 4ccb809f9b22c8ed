"""What a dataset folder holds: presence, sizes and sha256 digests of the registered files.

Everything here reads the one table of datasets, :data:`stgnn.data.registry.DATASETS`: a
dataset ``name`` lives in ``resolve_root(root) / name`` and holds the files listed in its
:class:`~stgnn.data.registry.DatasetInfo`.  Fetching files is :mod:`stgnn.data.transfer`'s job.

**When files are re-hashed.** :func:`check_files` (what loading a dataset runs) re-hashes every
file of at most :data:`REHASH_MAX_BYTES` (256 MiB, about half a second at the ~500 MB/s
sha256 runs at on one core), so a file whose content changed while its size and mtime did not
is still caught.  Only larger files are taken from the verification cache: a sidecar
``.<filename>.sha256ok`` holding ``"<size> <mtime_ns> <sha256>"``, written after a digest
matched and trusted while size, ``mtime_ns`` and the registered digest are unchanged; relying
on it is announced with a warning naming the file.  :func:`verify_dataset` (``stgnn datasets
verify``) re-hashes every file.  A read-only data folder simply means no sidecar is written.
"""

from __future__ import annotations

import logging
import os
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pooch

from stgnn.data.registry import DatasetInfo, FileInfo, get_info, resolve_root

__all__ = [
    "REHASH_MAX_BYTES",
    "ChecksumError",
    "FileStatus",
    "MissingFile",
    "MissingFilesError",
    "check_files",
    "dataset_folder",
    "missing_files",
    "sha256_file",
    "verify_dataset",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

REHASH_MAX_BYTES = 256 * 2**20
"""Files up to this size are re-hashed on every load; larger ones may use the cache."""

_SIDECAR_SUFFIX = ".sha256ok"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ChecksumError(ValueError):
    """A file's sha256 digest (or size) differs from the published one.

    Attributes:
        path: The file that was checked (for a download, its destination: nothing was
            written there).
        expected: Expected sha256 hex digest (or size in bytes when ``kind == "size"``).
        actual: Actual digest (or size), or ``None`` when a download was discarded unhashed.
        kind: ``"sha256"`` or ``"size"``.
        url: Where the file was downloaded from, when the mismatch followed a download.
    """

    def __init__(
        self,
        path: PathLike,
        expected: str | int,
        actual: str | int | None,
        *,
        kind: str = "sha256",
        url: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.kind = kind
        self.url = url
        if kind == "size":
            head = f"size mismatch for {self.path}: expected {int(expected):,} bytes, got {actual:,} bytes"
        else:
            head = f"sha256 mismatch for {self.path}: expected {expected}, got {actual or 'another digest'}"
        if url is not None:
            tail = f" (downloaded from {url}; the server's copy differs from the registered one, nothing was written)"
        else:
            tail = "; the file is corrupt or a different version: delete it and get it again"
        super().__init__(head + tail)


class MissingFile(NamedTuple):
    """One file that a dataset lacks: ``(dataset, name, folder, how)``.

    Attributes:
        dataset: Registry name of the dataset.
        name: File name, exactly as published.
        folder: Absolute folder the file must be put in.
        how: Where to get it: the direct URL, or the registry note when there is none
            (after a failed download: the URL and the error).
    """

    dataset: str
    name: str
    folder: Path
    how: str


class MissingFilesError(FileNotFoundError):
    """Files of a dataset are missing; the message lists each one, its folder and its source.

    Example message::

        dataset 'metr-la' is incomplete under /x/datasets/metr-la:
          - metr-la.h5 (57,038,056 bytes): not directly downloadable: get it from ...
          - adj_mx.pkl (680,459 bytes): download from https://...
          Put the files in /x/datasets/metr-la/ or run `stgnn datasets download metr-la --data-dir /x/datasets`.

    Attributes:
        dataset: Registry name of the dataset.
        folder: Absolute dataset folder.
        files: The registry entries of the missing files.
        missing: One :class:`MissingFile` ``(dataset, name, folder, how)`` per missing file.
        failures: File name -> error text, for files whose download was tried and failed.
    """

    def __init__(
        self,
        dataset: str,
        folder: PathLike,
        files: Sequence[FileInfo],
        *,
        failures: dict[str, str] | None = None,
    ) -> None:
        self.dataset = dataset
        self.folder = Path(folder).absolute()
        self.files: list[FileInfo] = list(files)
        self.failures: dict[str, str] = dict(failures or {})
        self.missing: list[MissingFile] = [
            MissingFile(dataset, f.name, self.folder, self._how(f)) for f in self.files
        ]
        lines = [f"dataset {dataset!r} is incomplete under {self.folder}:"]
        for f, m in zip(self.files, self.missing, strict=True):
            size = f" ({f.size:,} bytes)" if f.size is not None else ""
            lines.append(f"  - {f.name}{size}: {m.how}")
        hint = f"  Put the files in {self.folder}{os.sep}"
        if any(f.url for f in self.files):
            # the data root the files were looked for in, so the command fills this folder
            root = shlex.quote(str(self.folder.parent))
            hint += f" or run `stgnn datasets download {dataset} --data-dir {root}`"
        lines.append(hint + ".")
        super().__init__("\n".join(lines))

    def _how(self, f: FileInfo) -> str:
        if f.name in self.failures:
            return f"download from {f.url} failed ({self.failures[f.name]})"
        if f.url:
            return f"download from {f.url}"
        return f.note or "no direct download link is known"

    def __str__(self) -> str:  # FileNotFoundError would otherwise prefix "[Errno ...]".
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# Hashing and the verification cache
# --------------------------------------------------------------------------------------------


def sha256_file(path: PathLike) -> str:
    """Return the sha256 hex digest of a file (:func:`pooch.file_hash`, read in chunks).

    Args:
        path: File to hash.

    Returns:
        The lower-case hex digest.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(b"abc")
        >>> sha256_file(p)[:16]
        'ba7816bf8f01cfea'
    """
    return str(pooch.file_hash(str(path), alg="sha256"))


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}{_SIDECAR_SUFFIX}")


def _read_sidecar(path: Path) -> str | None:
    """Return the digest recorded for ``path`` if its size and mtime still match, else None."""
    try:
        size, mtime_ns, digest = _sidecar(path).read_text().split()
        st = path.stat()
    except (OSError, ValueError):
        return None
    if int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns:
        return digest.lower()
    return None


def write_sidecar(path: Path, digest: str) -> None:
    """Record that ``path`` (as it is now) has ``digest``; silently skipped when read-only."""
    try:
        st = path.stat()
        _sidecar(path).write_text(f"{st.st_size} {st.st_mtime_ns} {digest.lower()}\n")
    except OSError:  # read-only data folder: verification simply is not cached
        logger.debug("could not write %s", _sidecar(path), exc_info=True)


def _drop_sidecar(path: Path) -> None:
    try:
        _sidecar(path).unlink(missing_ok=True)
    except OSError:
        pass


def _digest(path: Path, expected: str, *, use_cache: bool) -> str:
    """Digest of ``path``; taken from the sidecar when ``use_cache`` and it vouches for it.

    A successful match (re)writes the sidecar, a mismatch removes it.
    """
    expected = expected.lower()
    if use_cache and _read_sidecar(path) == expected:
        warnings.warn(
            f"{path}: {path.stat().st_size:,} bytes, over the {REHASH_MAX_BYTES // 2**20} MiB re-hash limit; "
            "its sha256 is taken from the verification cache (size and mtime unchanged since it was "
            "last hashed); `stgnn datasets verify` re-hashes it",
            UserWarning,
            stacklevel=2,
        )
        return expected
    before = path.stat()
    actual = sha256_file(path)
    if actual == expected:
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            write_sidecar(path, actual)
    else:
        _drop_sidecar(path)
    return actual


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """The state of one registered file of a dataset on disk.

    Attributes:
        name: File name.
        path: Where the file is expected.
        present: Whether it exists.
        size: Its size in bytes, or ``None`` when absent.
        sha256_ok: ``True``/``False`` when a digest is registered and the file is present,
            ``None`` otherwise (no known digest, or absent).
        expected: Registered sha256, or ``None``.
        actual: Computed sha256, or ``None`` when not computed.
        required: Whether loading the dataset needs the file.
        expected_size: Registered size in bytes, or ``None``.
    """

    name: str
    path: Path
    present: bool
    size: int | None
    sha256_ok: bool | None
    expected: str | None
    actual: str | None
    required: bool
    expected_size: int | None = None

    @property
    def size_ok(self) -> bool | None:
        """Whether the size matches the registered one (``None`` when unknown or absent)."""
        if not self.present or self.expected_size is None:
            return None
        return self.size == self.expected_size

    @property
    def ok(self) -> bool:
        """Present, and neither the digest nor the size is known to be wrong."""
        return self.present and self.sha256_ok is not False and self.size_ok is not False


def dataset_folder(info: DatasetInfo, root: PathLike | None) -> Path:
    """``resolve_root(root) / info.name``."""
    return resolve_root(root) / info.name


def missing_files(name: str, root: PathLike | None = None) -> list[FileInfo]:
    """The required files of dataset ``name`` that are not under ``root / name``.

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``.

    Returns:
        Their registry entries, in registry order (empty when the dataset is complete).

    Example:
        >>> [f.name for f in missing_files("los-loop", "/nonexistent")]
        ['los_speed.csv', 'los_adj.csv']
    """
    info = get_info(name)
    folder = dataset_folder(info, root)
    return [f for f in info.files if f.required and not (folder / f.name).is_file()]


def verify_dataset(name: str, root: PathLike | None = None) -> list[FileStatus]:
    """Check every registered file of a dataset: presence, size and sha256 (always re-hashed).

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``
            (see :func:`~stgnn.data.registry.resolve_root`). The folder is ``root / name``.

    Returns:
        One :class:`FileStatus` per registered file, in registry order.

    Raises:
        KeyError: Unknown dataset.

    Example:
        >>> [s.name for s in verify_dataset("metr-la", "/nonexistent") if s.required]
        ['metr-la.h5', 'adj_mx.pkl']
    """
    info = get_info(name)
    folder = dataset_folder(info, root)
    statuses = []
    for f in info.files:
        path = folder / f.name
        if not path.is_file():
            statuses.append(FileStatus(f.name, path, False, None, None, f.sha256, None, f.required, f.size))
            continue
        actual = _digest(path, f.sha256, use_cache=False) if f.sha256 else None
        ok = None if f.sha256 is None else actual == f.sha256.lower()
        statuses.append(FileStatus(f.name, path, True, path.stat().st_size, ok, f.sha256, actual, f.required,
                                   f.size))
    return statuses


def check_files(info: DatasetInfo, folder: Path) -> None:
    """Check the digest (or, without one, the size) of every present registered file.

    Files of at most :data:`REHASH_MAX_BYTES` are re-hashed; larger ones may be vouched for
    by the verification cache, with a warning (see the module docstring).

    Raises:
        ChecksumError: The first file whose digest or size differs from the registry's.
    """
    for f in info.files:
        path = folder / f.name
        if not path.is_file():
            continue
        size = path.stat().st_size
        if f.sha256:
            actual = _digest(path, f.sha256, use_cache=size > REHASH_MAX_BYTES)
            if actual != f.sha256.lower():
                raise ChecksumError(path, f.sha256.lower(), actual)
        elif f.size is not None and size != f.size:
            raise ChecksumError(path, f.size, size, kind="size")
