"""Tests for stgnn.data.download against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stgnn.data import download as dl
from stgnn.data import registry
from stgnn.data.download import (
    ChecksumError,
    DownloadError,
    MissingFilesError,
    download_dataset,
    download_file,
    ensure_dataset,
    sha256_file,
    verify_dataset,
)
from stgnn.data.registry import DatasetInfo, FileInfo

# ---------------------------------------------------------------------------------------------
# Local server
# ---------------------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Server:
    """In-memory files plus, per path, a queue of behaviours (the last one repeats).

    Behaviours: ``ok`` (honours ``Range`` with 206), ``norange`` (ignores ``Range``, 200),
    ``truncate`` (announces the full length, sends half, closes), ``500``, ``drop`` (closes
    without answering), ``stall`` (sends half, then hangs until the test ends).
    """

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    behaviours: dict[str, list[str]] = field(default_factory=dict)
    requests: list[tuple[str, int | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, path: str, data: bytes, *behaviour: str) -> str:
        self.files[path] = data
        self.behaviours[path] = list(behaviour or ("ok",))
        return self.base + path

    def next_behaviour(self, path: str) -> str:
        with self.lock:
            queue = self.behaviours[path]
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def hits(self, path: str) -> list[int | None]:
        """The Range start of every request for ``path`` (None = no Range)."""
        with self.lock:
            return [start for p, start in self.requests if p == path]


def _handler(server: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # silence per-request logging
            pass

        def do_GET(self) -> None:  # http.server API name
            rng = self.headers.get("Range")
            start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else None
            with server.lock:
                server.requests.append((self.path, start))
            if self.path not in server.files:
                self.send_error(404, "Not Found")
                return
            data = server.files[self.path]
            how = server.next_behaviour(self.path)
            if how == "500":
                self.send_error(500, "Internal Server Error")
                return
            if how == "drop":
                self.close_connection = True
                return
            body, status = data, 200
            if how in ("ok", "truncate", "stall") and start:
                body, status = data[start:], 206
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if how in ("truncate", "stall"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if how == "stall":
                    server.stop.wait(5.0)  # bounded; released at teardown
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = _Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff delays instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(dl, "_sleep", delays.append)
    return delays


DATA = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one chunk


def _get(url: str, dest: Path, **kw: object) -> Path:
    kw.setdefault("progress", False)
    return download_file(url, dest, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# sha256_file / download_file
# ---------------------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(DATA * 2)
    assert sha256_file(p) == _sha(DATA * 2)
    assert sha256_file(str(p)) == _sha(DATA * 2)


def test_download_good_file(server: _Server, tmp_path: Path, sleeps: list[float]) -> None:
    url = server.add("/good.bin", DATA)
    dest = tmp_path / "sub" / "good.bin"
    out = _get(url, dest, sha256=_sha(DATA).upper(), size=len(DATA), progress=True)
    assert out == dest and dest.read_bytes() == DATA
    assert not Path(str(dest) + ".part").exists()
    assert server.hits("/good.bin") == [None] and sleeps == []


def test_truncated_once_resumes_with_range(server: _Server, tmp_path: Path,
                                           sleeps: list[float]) -> None:
    url = server.add("/t.bin", DATA, "truncate", "ok")
    dest = tmp_path / "t.bin"
    _get(url, dest, sha256=_sha(DATA), size=len(DATA), backoff=0.5)
    assert dest.read_bytes() == DATA
    assert server.hits("/t.bin") == [None, len(DATA) // 2]  # second request resumed
    assert sleeps == [0.5]


def test_truncated_without_known_size_or_digest_is_detected(server: _Server,
                                                            tmp_path: Path) -> None:
    url = server.add("/t.bin", DATA, "truncate", "ok")
    dest = tmp_path / "t.bin"
    _get(url, dest, backoff=0)  # only Content-Length can reveal the truncation
    assert dest.read_bytes() == DATA
    assert server.hits("/t.bin") == [None, len(DATA) // 2]


def test_resume_refused_restarts_from_zero(server: _Server, tmp_path: Path) -> None:
    url = server.add("/n.bin", DATA, "truncate", "norange")
    dest = tmp_path / "n.bin"
    _get(url, dest, sha256=_sha(DATA), backoff=0)
    assert dest.read_bytes() == DATA  # not half + full
    assert server.hits("/n.bin") == [None, len(DATA) // 2]


def test_always_truncated_fails_after_retries(server: _Server, tmp_path: Path,
                                              sleeps: list[float]) -> None:
    url = server.add("/bad.bin", DATA, "truncate")
    dest = tmp_path / "bad.bin"
    with pytest.raises(DownloadError, match="truncated") as exc:
        _get(url, dest, sha256=_sha(DATA), retries=2, backoff=1.0)
    assert url in str(exc.value)
    assert not dest.exists()
    assert len(server.hits("/bad.bin")) == 3
    assert sleeps == [1.0, 2.0]


def test_kept_part_is_resumed_by_the_next_call(server: _Server, tmp_path: Path) -> None:
    url = server.add("/r.bin", DATA, "truncate", "truncate", "ok")
    dest = tmp_path / "r.bin"
    with pytest.raises(DownloadError):
        _get(url, dest, sha256=_sha(DATA), retries=0)
    part = tmp_path / "r.bin.part"
    assert part.stat().st_size == len(DATA) // 2 and not dest.exists()
    _get(url, dest, sha256=_sha(DATA), retries=1, backoff=0)
    assert dest.read_bytes() == DATA and not part.exists()
    assert server.hits("/r.bin")[1] == len(DATA) // 2


def test_stale_part_without_digest_is_discarded(server: _Server, tmp_path: Path) -> None:
    url = server.add("/s.bin", DATA)
    (tmp_path / "s.bin.part").write_bytes(b"garbage")
    _get(url, tmp_path / "s.bin")
    assert (tmp_path / "s.bin").read_bytes() == DATA
    assert server.hits("/s.bin") == [None]


def test_stale_part_mismatch_triggers_one_fresh_download(server: _Server,
                                                         tmp_path: Path) -> None:
    url = server.add("/s.bin", DATA)
    (tmp_path / "s.bin.part").write_bytes(b"X" * 100)
    _get(url, tmp_path / "s.bin", sha256=_sha(DATA))
    assert (tmp_path / "s.bin").read_bytes() == DATA
    assert server.hits("/s.bin") == [100, None]


def test_complete_part_is_verified_without_a_request(server: _Server, tmp_path: Path) -> None:
    url = server.add("/c.bin", DATA)
    (tmp_path / "c.bin.part").write_bytes(DATA)
    _get(url, tmp_path / "c.bin", sha256=_sha(DATA), size=len(DATA))
    assert (tmp_path / "c.bin").read_bytes() == DATA
    assert server.hits("/c.bin") == []


def test_wrong_checksum(server: _Server, tmp_path: Path) -> None:
    url = server.add("/w.bin", DATA)
    dest = tmp_path / "w.bin"
    wrong = _sha(b"something else")
    with pytest.raises(ChecksumError) as exc:
        _get(url, dest, sha256=wrong, retries=3, backoff=0)
    msg = str(exc.value)
    assert "w.bin" in msg and wrong in msg and _sha(DATA) in msg
    assert exc.value.expected == wrong and exc.value.actual == _sha(DATA)
    assert isinstance(exc.value, ValueError)
    assert not dest.exists() and not (tmp_path / "w.bin.part").exists()
    assert server.hits("/w.bin") == [None]  # deterministic: no retry loop


def test_wrong_size(server: _Server, tmp_path: Path) -> None:
    url = server.add("/z.bin", DATA)
    dest = tmp_path / "z.bin"
    with pytest.raises(ChecksumError, match="size mismatch"):
        _get(url, dest, size=len(DATA) + 1)
    assert not dest.exists() and not (tmp_path / "z.bin.part").exists()


def test_server_error_retried_then_fails(server: _Server, tmp_path: Path,
                                         sleeps: list[float]) -> None:
    url = server.add("/e.bin", DATA, "500")
    with pytest.raises(DownloadError, match="500") as exc:
        _get(url, tmp_path / "e.bin", retries=3, backoff=0.25)
    assert exc.value.status == 500 and url in str(exc.value)
    assert len(server.hits("/e.bin")) == 4
    assert sleeps == [0.25, 0.5, 1.0]
    assert not (tmp_path / "e.bin").exists()


def test_server_error_once_then_ok(server: _Server, tmp_path: Path,
                                   sleeps: list[float]) -> None:
    url = server.add("/e1.bin", DATA, "500", "ok")
    _get(url, tmp_path / "e1.bin", sha256=_sha(DATA))
    assert (tmp_path / "e1.bin").read_bytes() == DATA
    assert len(server.hits("/e1.bin")) == 2 and len(sleeps) == 1


def test_dropped_connection_is_retried(server: _Server, tmp_path: Path) -> None:
    url = server.add("/d.bin", DATA, "drop", "ok")
    _get(url, tmp_path / "d.bin", sha256=_sha(DATA), backoff=0)
    assert (tmp_path / "d.bin").read_bytes() == DATA


def test_read_timeout_is_retried_and_resumed(server: _Server, tmp_path: Path) -> None:
    url = server.add("/slow.bin", DATA, "stall", "ok")
    _get(url, tmp_path / "slow.bin", sha256=_sha(DATA), timeout=0.3, backoff=0)
    assert (tmp_path / "slow.bin").read_bytes() == DATA
    assert server.hits("/slow.bin") == [None, len(DATA) // 2]


def test_404_raises_immediately_and_keeps_old_dest(server: _Server, tmp_path: Path,
                                                   sleeps: list[float]) -> None:
    url = server.base + "/missing.bin"
    dest = tmp_path / "missing.bin"
    dest.write_bytes(b"previous content")
    with pytest.raises(DownloadError) as exc:
        _get(url, dest, retries=3)
    assert url in str(exc.value) and "404" in str(exc.value)
    assert exc.value.status == 404
    assert server.hits("/missing.bin") == [None] and sleeps == []
    assert dest.read_bytes() == b"previous content"
    assert not (tmp_path / "missing.bin.part").exists()


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------

A, B, C, D = b"alpha" * 100, b"bravo" * 50, b"charlie", b"delta"


@pytest.fixture
def toy(server: _Server, monkeypatch: pytest.MonkeyPatch) -> DatasetInfo:
    """A temporary registry entry whose urls point at the local server."""
    info = DatasetInfo(
        name="toy",
        title="toy",
        files=(
            FileInfo("a.bin", _sha(A), server.add("/toy/a.bin", A), len(A)),
            FileInfo("b.bin", None, server.add("/toy/b.bin", B)),
            FileInfo("c.txt", _sha(C), None, len(C), note="ask the authors for c.txt"),
            FileInfo("d.bin", _sha(D), server.add("/toy/d.bin", D), len(D), required=False),
        ),
        shape=(1, 1, 1), interval_minutes=5, units="mph", feature_names=("speed",),
        split=(0.7, 0.1, 0.2), source="test", licence="test",
    )
    monkeypatch.setitem(registry.DATASETS, "toy", info)
    return info


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
    assert "stgnn datasets download metr-la" in msg
    assert "graph_sensor_ids.txt" not in msg
    ds, name, where, how = err.missing[0]
    assert (ds, name, where) == ("metr-la", "metr-la.h5", folder) and "DCRNN" in how


def test_ensure_dataset_uses_stgnn_data_env(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STGNN_DATA", str(tmp_path / "env-root"))
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("los-loop")
    assert exc.value.folder == (tmp_path / "env-root" / "los-loop").absolute()
    assert {m.name for m in exc.value.missing} == {"los_speed.csv", "los_adj.csv"}


def test_ensure_dataset_download(toy: DatasetInfo, server: _Server, tmp_path: Path) -> None:
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("toy", tmp_path, download=True, progress=False)
    folder = tmp_path / "toy"
    assert [m.name for m in exc.value.missing] == ["c.txt"]
    assert "ask the authors for c.txt" in str(exc.value)
    assert "stgnn datasets download" not in str(exc.value)  # would not help for c.txt
    assert (folder / "a.bin").read_bytes() == A and (folder / "b.bin").read_bytes() == B
    assert not (folder / "d.bin").exists()  # optional: not fetched by ensure_dataset
    (folder / "c.txt").write_bytes(C)
    assert ensure_dataset("toy", tmp_path) == folder
    assert server.hits("/toy/a.bin") == [None]  # second call downloaded nothing


def test_ensure_dataset_failed_download_is_listed(toy: DatasetInfo, server: _Server,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "_sleep", lambda s: None)
    server.behaviours["/toy/b.bin"] = ["500"]
    with pytest.raises(MissingFilesError) as exc:
        ensure_dataset("toy", tmp_path, download=True, progress=False)
    assert [m.name for m in exc.value.missing] == ["b.bin", "c.txt"]
    assert "HTTP 500" in exc.value.missing[0].how
    assert isinstance(exc.value.__cause__, DownloadError)
    assert (tmp_path / "toy" / "a.bin").exists()


def _place(folder: Path, **files: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name.replace("_", ".")).write_bytes(data)


def test_verification_cache_avoids_rehashing(toy: DatasetInfo, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "toy"
    _place(folder, a_bin=A, b_bin=B, c_txt=C)
    calls: list[Path] = []
    real = dl.sha256_file

    def counting(path: os.PathLike[str] | str) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(dl, "sha256_file", counting)
    ensure_dataset("toy", tmp_path)
    assert sorted(p.name for p in calls) == ["a.bin", "c.txt"]  # b.bin has no digest
    assert (folder / ".a.bin.sha256ok").read_text().split()[2] == _sha(A)
    calls.clear()
    ensure_dataset("toy", tmp_path)
    assert calls == []  # trusted the sidecars
    # Same size, new content and mtime: the sidecar no longer vouches for it.
    (folder / "a.bin").write_bytes(A[::-1])
    st = (folder / "a.bin").stat()
    os.utime(folder / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError) as exc:
        ensure_dataset("toy", tmp_path)
    assert [p.name for p in calls] == ["a.bin"]
    assert "a.bin" in str(exc.value) and _sha(A) in str(exc.value)
    assert not (folder / ".a.bin.sha256ok").exists()
    # A sidecar from a different registry digest is not trusted either.
    (folder / "a.bin").write_bytes(A)
    ensure_dataset("toy", tmp_path)
    calls.clear()
    new_a = FileInfo("a.bin", _sha(b"new"), None, len(A))
    monkeypatch.setitem(registry.DATASETS, "toy", replace(toy, files=(new_a, *toy.files[1:])))
    with pytest.raises(ChecksumError):
        ensure_dataset("toy", tmp_path)
    assert [p.name for p in calls] == ["a.bin"]


def test_downloaded_files_are_hashed_once(toy: DatasetInfo, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _place(tmp_path / "toy", c_txt=C)
    calls: list[str] = []
    real = dl.sha256_file

    def counting(path: os.PathLike[str] | str) -> str:
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(dl, "sha256_file", counting)
    ensure_dataset("toy", tmp_path, download=True, progress=False)
    assert calls == ["a.bin.part", "c.txt"]  # the download's own check seeds the cache
    calls.clear()
    ensure_dataset("toy", tmp_path)
    assert calls == []


def test_verify_dataset_reports_corruption(toy: DatasetInfo, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    _place(folder, a_bin=b"corrupt", b_bin=B, c_txt=C)
    status = {s.name: s for s in verify_dataset("toy", tmp_path)}
    assert list(status) == ["a.bin", "b.bin", "c.txt", "d.bin"]
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
    with pytest.raises(ChecksumError):
        ensure_dataset("toy", tmp_path, verify=True)
    assert ensure_dataset("toy", tmp_path, verify=False) == folder


def test_download_dataset(toy: DatasetInfo, server: _Server, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    with pytest.raises(MissingFilesError) as exc:
        download_dataset("toy", tmp_path, progress=False)
    assert [m.name for m in exc.value.missing] == ["c.txt"]
    assert str(folder.absolute()) in str(exc.value)
    for name, data in {"a.bin": A, "b.bin": B, "d.bin": D}.items():  # optional one too
        assert (folder / name).read_bytes() == data
    _place(folder, c_txt=C)
    assert download_dataset("toy", tmp_path, progress=False) == []  # all present: no-op
    assert server.hits("/toy/a.bin") == [None]
    got = download_dataset("toy", tmp_path, progress=False, force=True)
    assert got == [folder / "a.bin", folder / "b.bin", folder / "d.bin"]
    assert server.hits("/toy/a.bin") == [None, None]


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known datasets"):
        ensure_dataset("nope", tmp_path)
