"""Getting a benchmark dataset onto disk: locate it, and fetch what has a direct link.

Everything here reads the one table of datasets, :data:`stgnn.data.registry.DATASETS`.
:mod:`stgnn.data.integrity` says what a folder holds (presence, digests, the verification
cache); :mod:`stgnn.data.transfer` fetches one file (pooch, bounded time).  This module joins
them per dataset:

* :func:`ensure_dataset` — return a dataset's folder, downloading missing files first when
  asked (``download=True``, what ``train`` / ``evaluate`` / ``reproduce`` do unless told
  ``--no-download``), or raise an error that says exactly which files are missing, where to
  put them and where to get them.
* :func:`download_dataset` — fetch every file of a dataset that has a direct link
  (``stgnn datasets download``).

A network failure (no answer, refused connection, timeout) on one file ends the dataset's
downloads: the other files are not tried, so an offline machine gives up within one file's
time bound (see :mod:`stgnn.data.transfer`), not one per file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from stgnn.data.integrity import (
    ChecksumError,
    MissingFilesError,
    check_files,
    dataset_folder,
    verify_dataset,
    write_sidecar,
)
from stgnn.data.registry import DatasetInfo, FileInfo, get_info
from stgnn.data.transfer import DownloadError, download_file

__all__ = ["ChecksumError", "MissingFilesError", "download_dataset", "ensure_dataset", "verify_dataset"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _download_into(
    info: DatasetInfo, folder: Path, files: Sequence[FileInfo], *, progress: bool
) -> tuple[list[Path], dict[str, str], DownloadError | None]:
    """Download ``files`` (each with a url); returns (paths, failures by name, first error)."""
    done: list[Path] = []
    failures: dict[str, str] = {}
    first: DownloadError | None = None
    for f in files:
        assert f.url is not None
        if first is not None and first.status is None:
            failures[f.name] = "not tried: the network did not answer for an earlier file"
            continue
        path = folder / f.name
        try:
            download_file(f.url, path, sha256=f.sha256, progress=progress)
        except DownloadError as err:
            logger.error("%s: %s", info.name, err)
            failures[f.name] = str(err)
            first = first or err
            continue
        if f.sha256:
            write_sidecar(path, f.sha256)
        done.append(path)
    return done, failures, first


def ensure_dataset(
    name: str,
    root: PathLike | None = None,
    *,
    download: bool = False,
    verify: bool = True,
    progress: bool = True,
) -> Path:
    """Return a dataset's folder after checking that its required files are there.

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``. The folder is
            ``root / name``.
        download: Fetch the missing required files when every one of them has a direct
            link (progress bar, sha256 check); when some must be placed by hand, nothing is
            fetched and the error lists them all. Default ``False``.
        verify: Check the sha256 (or size) of every present registered file; files up to
            :data:`~stgnn.data.integrity.REHASH_MAX_BYTES` are re-hashed every time, larger
            ones may use the verification cache (with a warning). Default ``True``.
        progress: Show download progress bars. Default ``True``.

    Returns:
        The dataset folder.

    Raises:
        KeyError: Unknown dataset.
        MissingFilesError: Required files are (still) missing; the message lists every one,
            the folder to put it in and where to get it (and why a download failed). Chained
            from the first :class:`~stgnn.data.transfer.DownloadError`.
        ChecksumError: A present or downloaded file has the wrong digest or size.

    Example:
        >>> folder = ensure_dataset("los-loop", download=True)  # doctest: +SKIP
    """
    info = get_info(name)
    folder = dataset_folder(info, root)
    missing = [f for f in info.files if f.required and not (folder / f.name).is_file()]
    failures: dict[str, str] = {}
    first: DownloadError | None = None
    if missing and download and all(f.url for f in missing):
        _, failures, first = _download_into(info, folder, missing, progress=progress)
        missing = [f for f in missing if not (folder / f.name).is_file()]
    if missing:
        raise MissingFilesError(info.name, folder, missing, failures=failures) from first
    if verify:
        check_files(info, folder)
    return folder


def download_dataset(name: str, root: PathLike | None = None, *, progress: bool = True) -> list[Path]:
    """Download every absent file of a dataset that has a direct link (optional ones too).

    Files without a direct link cannot be fetched: when a *required* one is missing, or any
    download failed, a :class:`MissingFilesError` is raised after the other downloads,
    listing those files with their folder and where to get them.  A missing optional file
    without a link is only logged.

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``. The folder is
            ``root / name``.
        progress: Show download progress bars. Default ``True``.

    Returns:
        The paths downloaded by this call, in registry order.

    Raises:
        KeyError: Unknown dataset.
        MissingFilesError: Files that must be fetched by hand are missing, or downloads
            failed (chained from the first :class:`~stgnn.data.transfer.DownloadError`).
        ChecksumError: A download does not match its registered digest.

    Example:
        >>> download_dataset("los-loop", progress=False)  # doctest: +SKIP
        [PosixPath('datasets/los-loop/los_speed.csv'), PosixPath('datasets/los-loop/los_adj.csv')]
    """
    info = get_info(name)
    folder = dataset_folder(info, root)
    todo = [f for f in info.files if f.url and not (folder / f.name).is_file()]
    done, failures, first = _download_into(info, folder, todo, progress=progress)
    manual = [f for f in info.files if not f.url and not (folder / f.name).is_file()]
    for f in manual:
        if not f.required:
            logger.info("%s: optional file %s is absent (%s)", info.name, f.name, f.note or "no direct link")
    unresolved = [f for f in info.files if f.name in failures or (f in manual and f.required)]
    if unresolved:
        raise MissingFilesError(info.name, folder, unresolved, failures=failures) from first
    return done
