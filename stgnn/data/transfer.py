"""Fetching one file over HTTP(S): pooch does the transfer, this module bounds and explains it.

:func:`download_file` hands the transfer to :mod:`pooch` (streaming into a temporary file in
the destination folder, sha256 check, atomic move onto the destination, retries with a short
wait, a tqdm progress bar) and adds what pooch leaves open:

* **Bounded time.**  Every attempt has a connect timeout and a per-read timeout of
  ``timeout`` seconds (default :data:`DOWNLOAD_TIMEOUT`, 20 s), and there are ``retries``
  retries (default :data:`DOWNLOAD_RETRIES`, 2) with waits of 1 s, then 2 s.  A network that
  never answers therefore gives up after about ``(retries + 1) * timeout + 3`` seconds: about
  63 s per file with the defaults.  (A server that keeps sending a byte now and then is not
  cut off: the timeout is per read, not per file.)
* **Errors that name the address.**  Every failure is a :class:`DownloadError` naming the URL,
  the number of attempts and the timeout, or a
  :class:`~stgnn.data.integrity.ChecksumError` when the complete body does not match the
  registered digest; the destination is then left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import pooch
import requests

from stgnn.data.integrity import ChecksumError

__all__ = ["DOWNLOAD_RETRIES", "DOWNLOAD_TIMEOUT", "DownloadError", "download_file"]

PathLike = str | os.PathLike[str]

DOWNLOAD_TIMEOUT = 20.0
"""Seconds to wait for a connection, and for each read of the body."""

DOWNLOAD_RETRIES = 2
"""Retries after a failed attempt (pooch waits 1 s, then 2 s between them)."""


class DownloadError(OSError):
    """A download failed: an HTTP error answer, or no answer within the time bound.

    Attributes:
        url: The address that failed.
        status: The HTTP status of the answer, or ``None`` for a network failure (no answer,
            refused connection, timeout).
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def __str__(self) -> str:  # OSError would otherwise prefix "[Errno ...]" for some args.
        return str(self.args[0])


def download_file(
    url: str,
    dest: PathLike,
    *,
    sha256: str | None = None,
    retries: int = DOWNLOAD_RETRIES,
    timeout: float | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through pooch, verified and atomically.

    The body streams into a temporary file in ``dest``'s folder and is moved onto ``dest``
    only after its sha256 matched (when given), so ``dest`` is either its previous content
    or the verified new file.  A ``dest`` that already holds a file matching ``sha256`` is
    not downloaded again; one that does not match is replaced by a verified download.

    Args:
        url: Address to fetch (``http`` or ``https``).
        dest: Final path; its folder is created if needed.
        sha256: Expected hex digest, or ``None`` to skip the check. Default ``None``.
        retries: Retries after a failed attempt. Default :data:`DOWNLOAD_RETRIES` (2).
        timeout: Seconds to wait for the connection and for each read; ``None`` means
            :data:`DOWNLOAD_TIMEOUT` (20), read at call time.
        progress: Show a tqdm progress bar. Default ``True``.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: Every attempt failed (HTTP error answer, refused connection, or no
            answer within ``timeout``); the message names the URL, attempts and timeout.
        ChecksumError: The downloaded body does not match ``sha256``; nothing was written.

    Example:
        >>> download_file("https://example.org/adj_mx.pkl", "datasets/metr-la/adj_mx.pkl",
        ...               sha256="a356...")  # doctest: +SKIP
    """
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    known = f"sha256:{sha256.lower()}" if sha256 else None
    if known is None and dest.exists():
        dest.unlink()  # without a digest pooch would keep whatever is there
    fetcher = pooch.create(path=dest.parent, base_url="", registry={dest.name: known},
                           urls={dest.name: url}, retry_if_failed=max(0, retries))
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    attempts = max(0, retries) + 1
    try:
        fetcher.fetch(dest.name, downloader=downloader)
    except requests.RequestException as err:
        response = getattr(err, "response", None)
        status = None if response is None else response.status_code
        what = f"HTTP {status}" if status is not None else f"{type(err).__name__}: {err}"
        raise DownloadError(
            f"could not download {url} after {attempts} attempt(s) ({timeout:g} s timeout each): {what}",
            url=url, status=status,
        ) from err
    except ValueError as err:  # pooch's digest mismatch; the temporary file is already gone
        if sha256 is None or "hash" not in str(err):
            raise
        raise ChecksumError(dest, sha256.lower(), None, url=url) from err
    return dest
