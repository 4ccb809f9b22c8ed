"""The restricted unpickler for DCRNN adjacency pickles."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from stgnn.data.safe_pickle import UnsafePickleError, load_adj_pickle


def _write(path: Path, obj: object, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _valid(n: int = 3) -> list[object]:
    ids = [f"s{i}" for i in range(n)]
    return [ids, {s: i for i, s in enumerate(ids)}, np.eye(n, dtype=np.float32)]


# ---------------------------------------------------------------- the published files


@pytest.mark.parametrize(
    ("name", "n", "nonzeros"),
    [("metr-la/adj_mx.pkl", 207, 1722), ("pems-bay/adj_mx_bay.pkl", 325, 2694)],
)
def test_real_pickles_load(shared_data: Path, name: str, n: int, nonzeros: int) -> None:
    ids, index, adj = load_adj_pickle(shared_data / name)
    assert len(ids) == n and all(isinstance(s, str) for s in ids)
    assert index == {s: i for i, s in enumerate(ids)}
    assert adj.shape == (n, n) and adj.dtype == np.float32
    assert int(np.count_nonzero(adj)) == nonzeros
    np.testing.assert_array_equal(np.diag(adj), 1.0)


def test_metr_la_ids_match_sensor_id_file(shared_data: Path) -> None:
    ids, _, _ = load_adj_pickle(shared_data / "metr-la" / "adj_mx.pkl")
    text = (shared_data / "metr-la" / "graph_sensor_ids.txt").read_text()
    assert ids == text.split(",")


# ---------------------------------------------------------------- malicious files


class _Payload:
    """Pickles as ``func(*args)``: what an attacker's file does on a plain pickle.load."""

    def __init__(self, func: object, args: tuple[object, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("via", ["open", "system"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, protocol: int, via: str) -> None:
    marker = tmp_path / "MARKER"
    payload = (_Payload(builtins.open, (str(marker), "w")) if via == "open"
               else _Payload(os.system, (f"touch '{marker}'",)))
    # Hidden inside an otherwise valid structure, as a real attack would be.
    bad = _write(tmp_path / "adj_mx.pkl", [*_valid()[:2], payload], protocol)
    with pytest.raises(UnsafePickleError, match=r"adj_mx\.pkl: refuses to load global") as info:
        load_adj_pickle(bad)
    assert ("open" if via == "open" else "system") in str(info.value)
    assert not marker.exists()


def test_handwritten_os_system_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: refuses to load global 'os\.system'"):
        load_adj_pickle(bad)
    assert not marker.exists()


def test_unsafe_pickle_error_is_a_value_error() -> None:
    assert issubclass(UnsafePickleError, ValueError)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4])
def test_python3_pickle_of_valid_structure_loads(tmp_path: Path, protocol: int) -> None:
    # Protocols 0-2 store the array bytes through _codecs.encode(text, "latin1").
    ids, index, adj = load_adj_pickle(_write(tmp_path / "adj.pkl", _valid(), protocol))
    assert ids == ["s0", "s1", "s2"] and index == {"s0": 0, "s1": 1, "s2": 2}
    np.testing.assert_array_equal(adj, np.eye(3))


def test_codecs_encode_stand_in_only_encodes_text(tmp_path: Path) -> None:
    # A pickle that calls _codecs.encode on a non-string (or another codec) is refused.
    bad = tmp_path / "codec.pkl"
    bad.write_bytes(b"c_codecs\nencode\n(I42\nS'rot13'\ntR.")
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        load_adj_pickle(bad)


def test_protocol_5_frombuffer_is_refused(tmp_path: Path) -> None:
    # numpy's _frombuffer (protocol 5) is not in the DCRNN files; the allow-list leaves it out.
    with pytest.raises(UnsafePickleError, match="refuses to load global"):
        load_adj_pickle(_write(tmp_path / "adj.pkl", _valid(), 5))


# ---------------------------------------------------------------- malformed files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pkl"):
        load_adj_pickle(tmp_path / "nope.pkl")


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", b"\x80\x04\x95garbage"])
def test_unreadable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.pkl: not a readable pickle"):
        load_adj_pickle(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"a": 1}, r"expected \[sensor_ids, sensor_id_to_ind, adj_mx\], found a dict"),
        (_valid()[:2], "found a list of length 2"),
        ([[1, 2, 3], {}, np.eye(3)], "sensor_ids must be a list of str"),
        ([["a", "a", "b"], {"a": 0, "b": 2}, np.eye(3)], "repeated ids"),
        ([["a", "b"], {"a": 1, "b": 0}, np.eye(2)], "sensor_id_to_ind does not match"),
        ([["a", "b"], {"a": 0}, np.eye(2)], "1 ids missing"),
        ([["a", "b"], {"a": 0, "b": 1}, [[1.0, 0.0], [0.0, 1.0]]], "must be a numpy array"),
        ([["a", "b"], {"a": 0, "b": 1}, np.ones((2, 3))], r"square 2-D matrix, found \(2, 3\)"),
        ([["a", "b"], {"a": 0, "b": 1}, np.eye(3)], "3x3 but there are 2 sensor ids"),
        ([["a", "b"], {"a": 0, "b": 1}, np.eye(2, dtype=np.int64)], "must hold floats"),
    ],
)
def test_malformed_structure(tmp_path: Path, content: object, message: str) -> None:
    path = _write(tmp_path / "adj_mx.pkl", content)
    with pytest.raises(ValueError, match=message) as info:
        load_adj_pickle(path)
    assert str(path) in str(info.value)
