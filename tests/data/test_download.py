"""Downloads and dataset integrity, against servers on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stgnn.data import download as dl
from stgnn.data import integrity, registry
from stgnn.data.download import download_dataset, ensure_dataset
from stgnn.data.integrity import ChecksumError, MissingFilesError, missing_files, sha256_file, verify_dataset
from stgnn.data.registry import DatasetInfo, FileInfo
from stgnn.data.transfer import DownloadError, download_file

# ---------------------------------------------------------------------------------------------
# Local servers
# ---------------------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Server:
    """In-memory files plus, per path, a queue of behaviours (the last one repeats):
    ``ok``, ``500`` or ``drop`` (close without answering)."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, list[str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, data: bytes, *behaviour: str) -> str:
        self.files[path] = data
        self.behaviours[path] = list(behaviour or ("ok",))
        return self.base + path

    def next_behaviour(self, path: str) -> str:
        with self.lock:
            queue = self.behaviours[path]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def hits(self, path: str) -> int:
        with self.lock:
            return self.requests.count(path)


def _handler(server: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # silence per-request logging
            pass

        def do_GET(self) -> None:  # http.server API name
            with server.lock:
                server.requests.append(self.path)
            if self.path not in server.files:
                self.send_error(404, "Not Found")
                return
            how = server.next_behaviour(self.path)
            if how == "500":
                self.send_error(500, "Internal Server Error")
                return
            if how == "drop":
                self.close_connection = True
                return
            data = server.files[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(no_proxy: None) -> Iterator[_Server]:
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def silent_server(no_proxy: None) -> Iterator[str]:
    """A socket on 127.0.0.1 that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record pooch's waits between retries instead of sleeping."""
    import pooch.core

    delays: list[float] = []
    monkeypatch.setattr(pooch.core.time, "sleep", delays.append)
    return delays


DATA = bytes(range(256)) * 4096 + b"tail"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# download_file
# ---------------------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(DATA * 2)
    assert sha256_file(p) == _sha(DATA * 2) == sha256_file(str(p))


def test_download_good_file(server: _Server, tmp_path: Path) -> None:
    dest = download_file(server.add("/f.bin", DATA), tmp_path / "f.bin", sha256=_sha(DATA), progress=False)
    assert dest.read_bytes() == DATA and _leftovers(tmp_path) == ["f.bin"]
    download_file(server.base + "/f.bin", dest, sha256=_sha(DATA), progress=False)
    assert server.hits("/f.bin") == 1  # already there and verified: not fetched again


def test_wrong_checksum_writes_nothing_and_keeps_the_old_file(server: _Server, tmp_path: Path,
                                                              sleeps: list[float]) -> None:
    url = server.add("/f.bin", DATA)
    with pytest.raises(ChecksumError, match=rf"sha256 mismatch for .*f.bin.*downloaded from {url}"):
        download_file(url, tmp_path / "f.bin", sha256=_sha(b"other"), retries=0, progress=False)
    assert _leftovers(tmp_path) == []
    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(ChecksumError):
        download_file(url, tmp_path / "f.bin", sha256=_sha(b"other"), retries=0, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == b"old" and _leftovers(tmp_path) == ["f.bin"]


def test_http_error_names_url_and_status(server: _Server, tmp_path: Path) -> None:
    url = server.base + "/absent.bin"
    with pytest.raises(DownloadError, match=rf"could not download {url} after 1 attempt\(s\).*HTTP 404") as exc:
        download_file(url, tmp_path / "a.bin", retries=0, progress=False)
    assert exc.value.status == 404 and exc.value.url == url and _leftovers(tmp_path) == []


def test_server_error_is_retried(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    url = server.add("/f.bin", DATA, "500", "drop", "ok")
    download_file(url, tmp_path / "f.bin", sha256=_sha(DATA), retries=2, progress=False)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert server.hits("/f.bin") == 3 and sleeps == [1, 2]


def test_a_network_that_never_answers_gives_up_within_the_bound(silent_server: str, tmp_path: Path,
                                                                sleeps: list[float]) -> None:
    url = silent_server + "/los_speed.csv"
    start = time.monotonic()
    with pytest.raises(DownloadError, match=rf"{url} after 2 attempt\(s\) \(0.5 s timeout each\): .*Timeout") as exc:
        download_file(url, tmp_path / "f.csv", retries=1, timeout=0.5, progress=False)
    elapsed = time.monotonic() - start
    assert exc.value.status is None
    assert 2 * 0.5 <= elapsed < 2 * 0.5 + 3.0  # (retries + 1) * timeout, plus slack
    assert sleeps == [1] and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

A, B, C, D = b"alpha" * 100, b"bravo" * 50, b"charlie", b"delta"


@pytest.fixture
def toy(server: _Server, monkeypatch: pytest.MonkeyPatch) -> DatasetInfo:
    """A registry entry whose files all have links on the local server (d.bin optional)."""
    info = DatasetInfo(
        name="toy",
        title="toy",
        files=(
            FileInfo("a.bin", _sha(A), server.add("/toy/a.bin", A), len(A)),
            FileInfo("b.bin", None, server.add("/toy/b.bin", B)),
            FileInfo("d.bin", _sha(D), server.add("/toy/d.bin", D), len(D), required=False),
        ),
        shape=(1, 1, 1), interval_minutes=5, units="mph", feature_names=("speed",),
        split=(0.7, 0.1, 0.2), source="test", licence="test",
    )
    monkeypatch.setitem(registry.DATASETS, "toy", info)
    return info


@pytest.fixture
def manual_toy(toy: DatasetInfo, monkeypatch: pytest.MonkeyPatch) -> DatasetInfo:
    """The toy dataset plus a required file without a direct link."""
    info = replace(toy, files=(*toy.files, FileInfo("c.txt", _sha(C), None, len(C), note="ask the authors")))
    monkeypatch.setitem(registry.DATASETS, "toy", info)
    return info


def _place(folder: Path, **files: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name.replace("_", ".")).write_bytes(data)


def test_ensure_dataset_lists_every_missing_file_of_metr_la(tmp_path: Path) -> None:
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("METR-LA", tmp_path)
    err = exc.value
    folder = (tmp_path / "metr-la").absolute()
    msg = str(err)
    assert isinstance(err, FileNotFoundError)
    assert [m.name for m in err.missing] == ["metr-la.h5", "adj_mx.pkl"]  # required only
    assert all(m.folder == folder and m.dataset == "metr-la" for m in err.missing)
    assert "metr-la.h5 (57,038,056 bytes)" in msg and "DCRNN" in msg
    assert "adj_mx.pkl (680,459 bytes): download from https://" in msg
    assert f"Put the files in {folder}{os.sep}" in msg
    # the advised command fills the folder that was searched, not the default data root
    assert f"stgnn datasets download metr-la --data-dir {tmp_path.absolute()}`" in msg
    assert "graph_sensor_ids.txt" not in msg
    assert [f.name for f in missing_files("metr-la", tmp_path)] == ["metr-la.h5", "adj_mx.pkl"]


def test_ensure_dataset_fetches_nothing_when_a_file_must_be_placed_by_hand(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "download_file", lambda *a, **k: pytest.fail("nothing may be fetched"))
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("metr-la", tmp_path, download=True)
    assert [m.name for m in exc.value.missing] == ["metr-la.h5", "adj_mx.pkl"]


def test_ensure_dataset_uses_stgnn_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STGNN_DATA", str(tmp_path / "env-root"))
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("los-loop")
    assert exc.value.folder == (tmp_path / "env-root" / "los-loop").absolute()
    assert {m.name for m in exc.value.missing} == {"los_speed.csv", "los_adj.csv"}


def test_ensure_dataset_downloads_the_missing_required_files(toy: DatasetInfo, server: _Server,
                                                             tmp_path: Path) -> None:
    folder = ensure_dataset("toy", tmp_path, download=True, progress=False)
    assert (folder / "a.bin").read_bytes() == A and (folder / "b.bin").read_bytes() == B
    assert not (folder / "d.bin").exists()  # optional: not fetched by ensure_dataset
    assert ensure_dataset("toy", tmp_path) == folder
    assert server.hits("/toy/a.bin") == 1  # the second call downloaded nothing


def test_ensure_dataset_without_download_refuses(toy: DatasetInfo, server: _Server, tmp_path: Path) -> None:
    with pytest.raises(MissingFilesError, match=r"a.bin \(500 bytes\): download from http://127.0.0.1"):
        ensure_dataset("toy", tmp_path)
    assert server.hits("/toy/a.bin") == 0


def test_ensure_dataset_lists_a_failed_download(toy: DatasetInfo, server: _Server, tmp_path: Path,
                                               sleeps: list[float]) -> None:
    server.behaviours["/toy/b.bin"] = ["500"]
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("toy", tmp_path, download=True, progress=False)
    assert [m.name for m in exc.value.missing] == ["b.bin"]
    assert "HTTP 500" in exc.value.missing[0].how
    assert isinstance(exc.value.__cause__, DownloadError)
    assert (tmp_path / "toy" / "a.bin").exists()


def test_offline_stops_after_the_first_file(toy: DatasetInfo, silent_server: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    from stgnn.data import transfer

    monkeypatch.setattr(transfer, "DOWNLOAD_TIMEOUT", 0.3)
    files = tuple(replace(f, url=silent_server + "/" + f.name) for f in toy.files)
    monkeypatch.setitem(registry.DATASETS, "toy", replace(toy, files=files))
    start = time.monotonic()
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("toy", tmp_path, download=True, progress=False)
    assert time.monotonic() - start < 3 * 0.3 + 3.0  # one file's bound, not one per file
    how = {m.name: m.how for m in exc.value.missing}
    assert "Timeout" in how["a.bin"] and "not tried: the network did not answer" in how["b.bin"]


def test_small_files_are_rehashed_even_when_size_and_mtime_did_not_change(
        toy: DatasetInfo, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    _place(folder, a_bin=A, b_bin=B)
    ensure_dataset("toy", tmp_path)
    assert (folder / ".a.bin.sha256ok").read_text().split()[2] == _sha(A)
    # Same size and mtime, other content: the cached "verified" flag must not be trusted.
    st = (folder / "a.bin").stat()
    (folder / "a.bin").write_bytes(A[::-1])
    os.utime(folder / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ChecksumError, match=rf"a.bin: expected {_sha(A)}"):
        ensure_dataset("toy", tmp_path)


def test_large_files_use_the_cache_and_say_so(toy: DatasetInfo, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "toy"
    _place(folder, a_bin=A, b_bin=B)
    monkeypatch.setattr(integrity, "REHASH_MAX_BYTES", 100)  # a.bin (500 bytes) counts as large
    calls: list[str] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda p: calls.append(Path(p).name) or real(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first check hashes: no cache to rely on yet
        ensure_dataset("toy", tmp_path)
    assert calls == ["a.bin"]
    with pytest.warns(UserWarning, match=r"a.bin: 500 bytes, over the .* taken from the verification cache"):
        ensure_dataset("toy", tmp_path)
    assert calls == ["a.bin"]
    (folder / "a.bin").write_bytes(A[::-1])  # a new mtime invalidates the cache
    with pytest.raises(ChecksumError):
        ensure_dataset("toy", tmp_path)
    assert not (folder / ".a.bin.sha256ok").exists()


def test_verify_dataset_reports_corruption(manual_toy: DatasetInfo, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    _place(folder, a_bin=b"corrupt", b_bin=B, c_txt=C)
    status = {s.name: s for s in verify_dataset("toy", tmp_path)}
    assert list(status) == ["a.bin", "b.bin", "d.bin", "c.txt"]
    a = status["a.bin"]
    assert a.present and a.sha256_ok is False and not a.ok
    assert a.expected == _sha(A) and a.actual == _sha(b"corrupt") and a.size == 7
    assert a.size_ok is False and a.path == folder / "a.bin" and a.required
    assert status["b.bin"].sha256_ok is None and status["b.bin"].ok
    assert status["c.txt"].sha256_ok is True and status["c.txt"].ok
    d = status["d.bin"]
    assert not d.present and d.sha256_ok is None and not d.required and not d.ok
    with pytest.raises(ChecksumError):
        ensure_dataset("toy", tmp_path)
    assert ensure_dataset("toy", tmp_path, verify=False) == folder


def test_download_dataset(manual_toy: DatasetInfo, server: _Server, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    with pytest.raises(MissingFilesError) as exc:
        download_dataset("toy", tmp_path, progress=False)
    assert [m.name for m in exc.value.missing] == ["c.txt"] and "ask the authors" in str(exc.value)
    for name, data in {"a.bin": A, "b.bin": B, "d.bin": D}.items():  # the optional one too
        assert (folder / name).read_bytes() == data
    _place(folder, c_txt=C)
    assert download_dataset("toy", tmp_path, progress=False) == []  # all present: no-op
    assert server.hits("/toy/a.bin") == 1


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known datasets"):
        ensure_dataset("nope", tmp_path)


def test_load_dataset_fetches_a_missing_dataset(server: _Server, tmp_path: Path, shared_data: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from stgnn.data import load_dataset

    info = registry.get_info("los-loop")
    files = tuple(replace(f, url=server.add(f"/tgcn/{f.name}", (shared_data / "los-loop" / f.name).read_bytes()))
                  for f in info.files)
    monkeypatch.setitem(registry.DATASETS, "los-loop", replace(info, files=files))
    with pytest.raises(MissingFilesError, match="los_speed.csv"):
        load_dataset("los-loop", tmp_path)  # download=False: refuses, names what is missing
    ds = load_dataset("los-loop", tmp_path, download=True)
    assert ds.series.shape == (2016, 207, 1)
    assert sha256_file(tmp_path / "los-loop" / "los_speed.csv") == info.files[0].sha256
