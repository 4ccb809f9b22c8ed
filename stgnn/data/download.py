"""Download, verify and locate the canonical dataset files.

Everything here reads the one table of datasets, :data:`stgnn.data.registry.DATASETS`:
a dataset ``name`` lives in the folder ``resolve_root(root) / name`` and holds the files
listed in its :class:`~stgnn.data.registry.DatasetInfo`.

Public API:

* :func:`download_file` — fetch one URL to a path, atomically, with resumable retries and
  size / sha256 verification (``urllib`` only, no extra dependency).
* :func:`verify_dataset` — report, file by file, what is present and whether it matches its
  published digest.
* :func:`ensure_dataset` — return a dataset's folder or raise an error that says exactly which
  files are missing, where to put them and where to get them.
* :func:`download_dataset` — fetch every file of a dataset that has a direct link.

Design decisions worth knowing:

* **Atomic files.** A download streams into ``<dest>.part`` in the destination folder and is
  moved onto ``dest`` with :func:`os.replace` only after its size and sha256 were checked, so
  ``dest`` never exists in a partial or unverified state.
* **Retries and resume.** Connection errors, timeouts, truncated bodies (fewer bytes than the
  ``Content-Length``) and HTTP 5xx / 408 / 429 are retried ``retries`` times with exponential
  backoff (``backoff * 2**k`` seconds, capped at 60 s). A retry asks for the rest of the
  ``.part`` with ``Range: bytes=N-`` (plus ``If-Range`` when the server sent a validator); a
  ``206`` answer is appended, a ``200`` answer restarts from byte 0. Any other HTTP 4xx raises
  :class:`DownloadError` at once. A ``.part`` left by an earlier, interrupted call is resumed
  only when a sha256 is known (otherwise nothing could tell a stale prefix from a good one)
  and is kept after a failed call for the same reason.
* **Checksum mismatch.** A mismatch after a download that started at byte 0 is deterministic
  (the server's copy differs from the registered one): the ``.part`` is deleted and
  :class:`ChecksumError` raised, with no retry. A mismatch after a *resumed* download may come
  from a stale prefix, so the ``.part`` is deleted and the file is downloaded once more from
  byte 0; a second mismatch raises.
* **Verification cache.** Once a file's sha256 matched, a sidecar ``.<filename>.sha256ok``
  holding ``"<size> <mtime_ns> <sha256>"`` is written next to it. :func:`ensure_dataset` trusts
  the sidecar (and skips re-hashing) while the file's size and ``mtime_ns`` are unchanged and
  the recorded digest equals the registry's. Changing the file (new size or mtime) or the
  registry digest invalidates it. :func:`verify_dataset` re-hashes by default
  (``use_cache=False``) because it is the explicit "check everything" command. A read-only
  data folder simply means no sidecar is written.
* Two processes downloading the same file into the same folder at the same time are not
  coordinated (they share the ``.part``); the checksum catches the result, not the race.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from stgnn.data.registry import DatasetInfo, FileInfo, get_info, resolve_root

__all__ = [
    "ChecksumError",
    "DownloadError",
    "FileStatus",
    "MissingFile",
    "MissingFilesError",
    "download_dataset",
    "download_file",
    "ensure_dataset",
    "sha256_file",
    "verify_dataset",
]

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
"""Bytes read per step when hashing or downloading (1 MiB)."""

_MAX_BACKOFF = 60.0
_RETRY_STATUS = frozenset({408, 429})
_USER_AGENT = "stgnn-downloader (+https://github.com/; python-urllib)"
_SIDECAR_SUFFIX = ".sha256ok"

# Indirection so tests can record the backoff delays instead of sleeping.
_sleep: Callable[[float], None] = time.sleep

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ChecksumError(ValueError):
    """A file's sha256 digest (or size) differs from the published one.

    Attributes:
        path: The file that was checked (for a download, its final destination; the partial
            file has already been deleted).
        expected: Expected sha256 hex digest (or size in bytes when ``kind == "size"``).
        actual: Actual sha256 hex digest (or size in bytes).
        kind: ``"sha256"`` or ``"size"``.
        url: Where the file was downloaded from, when the mismatch followed a download.
    """

    def __init__(
        self,
        path: PathLike,
        expected: str | int,
        actual: str | int,
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
            head = (f"size mismatch for {self.path}: expected {int(expected):,} bytes, "
                    f"got {int(actual):,} bytes")
        else:
            head = f"sha256 mismatch for {self.path}: expected {expected}, got {actual}"
        if url is not None:
            tail = (f" (downloaded from {url}; the server's copy differs from the registered "
                    "one, nothing was written)")
        else:
            tail = "; the file is corrupt or a different version: delete it and get it again"
        super().__init__(head + tail)


class DownloadError(OSError):
    """A download failed: an HTTP 4xx answer, or every retry of a transient failure.

    Attributes:
        url: The address that failed.
        status: The HTTP status of the last answer, or ``None`` for a network failure.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


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
          Put the files in /x/datasets/metr-la/ or run `stgnn datasets download metr-la`.

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
            hint += f" or run `stgnn datasets download {dataset}`"
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
    """Return the sha256 hex digest of a file, read in 1 MiB chunks.

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
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


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


def _write_sidecar(path: Path, digest: str, st: os.stat_result) -> None:
    try:
        _sidecar(path).write_text(f"{st.st_size} {st.st_mtime_ns} {digest}\n")
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
        return expected
    before = path.stat()
    actual = sha256_file(path)
    if actual == expected:
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            _write_sidecar(path, actual, after)
    else:
        _drop_sidecar(path)
    return actual


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


class _TransientError(Exception):
    """A failure worth retrying (network error, timeout, truncated body, 5xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def _part_path(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part")


def _open(url: str, offset: int, validator: str | None, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    req = urllib.request.Request(url, headers=headers)
    try:
        resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError:
        raise
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _TransientError(f"{type(err).__name__}: {reason}") from err
    return resp


def _fetch_once(
    url: str,
    part: Path,
    *,
    size: int | None,
    timeout: float,
    progress: bool,
    state: dict[str, str | None],
) -> bool:
    """One request: stream (the rest of) ``url`` into ``part``.

    Returns:
        Whether the finished ``.part`` starts with bytes from before this request (a resume).

    Raises:
        _TransientError: retryable failure; ``part`` keeps what was received.
        urllib.error.HTTPError: an HTTP error answer.
    """
    offset = part.stat().st_size if part.exists() else 0
    if offset and size is not None and offset >= size:
        if offset == size:
            return True  # complete from an earlier call; verification decides
        part.unlink()
        offset = 0
    resp = _open(url, offset, state.get("validator"), timeout)
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// answers carry no status
        if offset and status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"server answered Range bytes={offset}- with Content-Range "
                    f"{resp.headers.get('Content-Range')!r}; restarting"
                )
        elif offset:
            logger.info("%s: server ignored the Range request; restarting from byte 0", url)
            offset = 0
        etag = resp.headers.get("ETag")
        if etag and not etag.startswith("W/"):
            state["validator"] = etag
        elif resp.headers.get("Last-Modified"):
            state["validator"] = resp.headers.get("Last-Modified")
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else size
        # read1: one socket read per call, so a timeout loses nothing already received.
        read = getattr(resp, "read1", resp.read)
        received = 0
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name[: -len(".part")],
            disable=None if progress else True,  # None: off when stderr is not a terminal
            leave=False,
        ) as bar:
            while True:
                try:
                    chunk = read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as err:
                    raise _TransientError(
                        f"connection lost after {offset + received:,} bytes "
                        f"({type(err).__name__}: {err})"
                    ) from err
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if length is not None and received < length:
        raise _TransientError(
            f"truncated body: got {received:,} of {length:,} bytes (Content-Length)"
        )
    return offset > 0


def _fetch_with_retries(
    url: str,
    part: Path,
    *,
    size: int | None,
    retries: int,
    timeout: float,
    progress: bool,
    backoff: float,
) -> bool:
    """Fill ``part`` with the whole body of ``url``; returns whether the result was resumed."""
    attempts = max(0, retries) + 1
    state: dict[str, str | None] = {"validator": None}
    last: _TransientError | None = None
    for attempt in range(attempts):
        if attempt:
            delay = min(backoff * 2 ** (attempt - 1), _MAX_BACKOFF)
            logger.warning("%s: %s; retry %d/%d in %.1f s", url, last, attempt, retries, delay)
            if delay > 0:
                _sleep(delay)
        try:
            return _fetch_once(url, part, size=size, timeout=timeout, progress=progress,
                               state=state)
        except urllib.error.HTTPError as err:
            err.close()
            code = err.code
            if code >= 500 or code in _RETRY_STATUS:
                last = _TransientError(f"HTTP {code} {err.reason}", status=code)
            elif code == 416:  # our Range no longer fits the resource: start over
                part.unlink(missing_ok=True)
                last = _TransientError("HTTP 416 Range Not Satisfiable; restarting", status=code)
            else:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"HTTP {code} {err.reason} for {url}", url=url, status=code
                ) from None
        except _TransientError as err:
            last = err
    assert last is not None
    raise DownloadError(
        f"could not download {url} after {attempts} attempt(s): {last}", url=url,
        status=last.status,
    ) from last


def _check_part(part: Path, dest: Path, url: str, sha256: str | None, size: int | None) -> None:
    if size is not None:
        actual_size = part.stat().st_size
        if actual_size != size:
            raise ChecksumError(dest, size, actual_size, kind="size", url=url)
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            raise ChecksumError(dest, sha256.lower(), actual, url=url)


def download_file(
    url: str,
    dest: PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, with resumable retries and verification.

    The body streams into ``dest`` + ``".part"`` (same folder); once complete, its size and
    sha256 are checked (where given) and it is renamed onto ``dest`` with :func:`os.replace`.
    ``dest`` is therefore either absent, its previous content, or the verified new file.

    Transient failures (connection errors, timeouts, a body shorter than its
    ``Content-Length``, HTTP 5xx / 408 / 429) are retried up to ``retries`` times, waiting
    ``backoff * 2**k`` seconds (capped at 60 s) and resuming with ``Range: bytes=N-``: a ``206``
    answer is appended to the ``.part``, a ``200`` restarts it. Other HTTP 4xx answers raise
    immediately. A checksum mismatch on a download that started at byte 0 raises at once; one
    on a resumed download is retried once from byte 0 (the kept prefix may be stale).

    Args:
        url: Address to fetch (``http``, ``https`` or ``file``).
        dest: Final path; its folder is created if needed. An existing file is replaced only
            by a verified download.
        sha256: Expected hex digest, or ``None`` to skip the check. Default ``None``.
        size: Expected size in bytes, or ``None`` to skip the check. Default ``None``.
        retries: Retries after the first attempt for transient failures. Default 3.
        timeout: Socket timeout in seconds for connecting and for each read. Default 30.
        progress: Show a tqdm progress bar on a terminal. Default ``True``.
        backoff: Base of the exponential wait between retries, in seconds. Default 1.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: HTTP 4xx, or every attempt failed (the message names the URL).
        ChecksumError: The complete download has the wrong size or digest; neither ``dest``
            nor the ``.part`` is left behind.

    Example:
        >>> download_file("https://example.org/adj_mx.pkl", "datasets/metr-la/adj_mx.pkl",
        ...               sha256="a356...", size=680459)  # doctest: +SKIP
    """
    dest = Path(dest)
    part = _part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and sha256 is None:
        # Without a digest a stale prefix from an earlier call could not be detected.
        part.unlink()
    for fresh_retry in (False, True):
        resumed = _fetch_with_retries(url, part, size=size, retries=retries, timeout=timeout,
                                      progress=progress, backoff=backoff)
        try:
            _check_part(part, dest, url, sha256, size)
        except ChecksumError as err:
            part.unlink(missing_ok=True)
            if resumed and not fresh_retry:
                logger.warning("%s; the download was resumed, downloading it again from "
                               "byte 0", err)
                continue
            raise
        os.replace(part, dest)
        return dest
    raise AssertionError("unreachable")  # pragma: no cover


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
        actual: Computed (or cached) sha256, or ``None`` when not computed.
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


def _folder(info: DatasetInfo, root: PathLike | None) -> Path:
    return resolve_root(root) / info.name


def _status(f: FileInfo, folder: Path, *, use_cache: bool) -> FileStatus:
    path = folder / f.name
    if not path.is_file():
        return FileStatus(f.name, path, False, None, None, f.sha256, None, f.required, f.size)
    size = path.stat().st_size
    actual = _digest(path, f.sha256, use_cache=use_cache) if f.sha256 else None
    ok = None if f.sha256 is None else actual == f.sha256.lower()
    return FileStatus(f.name, path, True, size, ok, f.sha256, actual, f.required, f.size)


def verify_dataset(name: str, root: PathLike | None = None, *,
                   use_cache: bool = False) -> list[FileStatus]:
    """Check every registered file of a dataset: presence, size and sha256.

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``
            (see :func:`~stgnn.data.registry.resolve_root`). The folder is ``root / name``.
        use_cache: Trust ``.<file>.sha256ok`` sidecars instead of re-hashing. Default
            ``False``: this is the explicit full check (a match refreshes the sidecar).

    Returns:
        One :class:`FileStatus` per registered file, in registry order.

    Raises:
        KeyError: Unknown dataset.

    Example:
        >>> [s.name for s in verify_dataset("metr-la", "/nonexistent") if s.required]
        ['metr-la.h5', 'adj_mx.pkl']
    """
    info = get_info(name)
    folder = _folder(info, root)
    return [_status(f, folder, use_cache=use_cache) for f in info.files]


def _download_into(
    info: DatasetInfo, folder: Path, files: Sequence[FileInfo], *, progress: bool
) -> tuple[list[Path], dict[str, str], DownloadError | None]:
    """Download ``files`` (each with a url); returns (paths, failures by name, first error)."""
    done: list[Path] = []
    failures: dict[str, str] = {}
    first: DownloadError | None = None
    for f in files:
        assert f.url is not None
        path = folder / f.name
        try:
            download_file(f.url, path, sha256=f.sha256, size=f.size, progress=progress)
        except DownloadError as err:
            logger.error("%s: %s", info.name, err)
            failures[f.name] = str(err)
            first = first or err
            continue
        if f.sha256:
            _write_sidecar(path, f.sha256.lower(), path.stat())
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
        download: Download missing required files that have a direct link. Default ``False``.
        verify: Check the sha256 of every present file with a registered digest (and the
            size of files with only a registered size). Results are cached in
            ``.<file>.sha256ok`` sidecars, trusted while the file's size and mtime are
            unchanged, so repeated calls do not re-hash. Default ``True``.
        progress: Show download progress bars. Default ``True``.

    Returns:
        The dataset folder.

    Raises:
        KeyError: Unknown dataset.
        MissingFilesError: Required files are (still) missing; the message lists every one,
            the folder to put it in and where to get it. Chained from the first
            :class:`DownloadError` when a download failed.
        ChecksumError: A present file (the first found) has the wrong digest or size.

    Example:
        >>> folder = ensure_dataset("metr-la")  # doctest: +SKIP
    """
    info = get_info(name)
    folder = _folder(info, root)
    missing = [f for f in info.files if f.required and not (folder / f.name).is_file()]
    failures: dict[str, str] = {}
    first: DownloadError | None = None
    if missing and download:
        fetchable = [f for f in missing if f.url]
        _, failures, first = _download_into(info, folder, fetchable, progress=progress)
        missing = [f for f in missing if not (folder / f.name).is_file()]
    if missing:
        raise MissingFilesError(info.name, folder, missing, failures=failures) from first
    if verify:
        for f in info.files:
            path = folder / f.name
            if not path.is_file():
                continue
            if f.sha256:
                actual = _digest(path, f.sha256, use_cache=True)
                if actual != f.sha256.lower():
                    raise ChecksumError(path, f.sha256.lower(), actual)
            elif f.size is not None and path.stat().st_size != f.size:
                raise ChecksumError(path, f.size, path.stat().st_size, kind="size")
    return folder


def download_dataset(
    name: str,
    root: PathLike | None = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> list[Path]:
    """Download every file of a dataset that has a direct link.

    Files already present are skipped unless ``force`` (present files are not re-verified
    here; :func:`ensure_dataset` / :func:`verify_dataset` do that). Files without a direct
    link cannot be fetched: when a *required* one is missing, or any download failed, a
    :class:`MissingFilesError` is raised after all other downloads, listing those files with
    their folder and where to get them. A missing optional file without a link is only logged.

    Args:
        name: Registry name (case-insensitive).
        root: Data root; ``None`` means ``$STGNN_DATA`` or ``./datasets``. The folder is
            ``root / name``.
        progress: Show download progress bars. Default ``True``.
        force: Download files with a link even when present. Default ``False``.

    Returns:
        The paths downloaded by this call, in registry order.

    Raises:
        KeyError: Unknown dataset.
        MissingFilesError: Files that must be fetched by hand are missing, or downloads
            failed (chained from the first :class:`DownloadError`).
        ChecksumError: A download does not match its registered digest or size.

    Example:
        >>> download_dataset("los-loop", progress=False)  # doctest: +SKIP
        [PosixPath('datasets/los-loop/los_speed.csv'), PosixPath('datasets/los-loop/los_adj.csv')]
    """
    info = get_info(name)
    folder = _folder(info, root)
    todo = [f for f in info.files if f.url and (force or not (folder / f.name).is_file())]
    done, failures, first = _download_into(info, folder, todo, progress=progress)
    manual = [f for f in info.files if not f.url and not (folder / f.name).is_file()]
    for f in manual:
        if not f.required:
            logger.info("%s: optional file %s is absent (%s)", info.name, f.name,
                        f.note or "no direct link")
    unresolved = [f for f in info.files
                  if f.name in failures or (f in manual and f.required)]
    if unresolved:
        raise MissingFilesError(info.name, folder, unresolved, failures=failures) from first
    return done
