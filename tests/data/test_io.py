"""Reading data files: laziness, pickling, and clear errors for damaged files."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from lemon_pl.data import generate as gen
from lemon_pl.data.io import DataFileError, FamilySplit, open_split


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("io")
    gen.generate(r, "tiny", "heat,advection", splits=["train"], n_operators=3, k=4, progress=False)
    return r


def test_reader_matches_file(root):
    s = open_split(root, "heat", "train")
    with h5py.File(root / "heat" / "train.h5", "r") as f:
        u = f["u"][:]
    assert (s.n_operators, s.k, s.nt, s.nx) == u.shape
    assert len(s) == 12
    np.testing.assert_array_equal(s.operator(1), u[1])
    np.testing.assert_array_equal(s.sample(2, 3), u[2, 3])
    np.testing.assert_allclose(s.stored_time, np.arange(64) * 2 / 64)
    assert s.param_names == ["nu"] and s.family == "heat" and s.split == "train"
    assert "3 operators" in repr(s)


def test_reader_pickles_for_dataloader_workers(root):
    s = open_split(root, "advection", "train")
    s.operator(0)  # opens the handle
    clone = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(clone.operator(2), s.operator(2))


def test_missing_file_names_the_command(tmp_path):
    with pytest.raises(DataFileError, match=r"kdv/val.h5 does not exist.*lemon-pl generate --root .* --families kdv"):
        open_split(tmp_path, "kdv", "val")


def _copy(root, tmp_path):
    dst = tmp_path / "heat"
    dst.mkdir()
    data = (root / "heat" / "train.h5").read_bytes()
    return dst / "train.h5", data


def test_truncated_file_is_detected(root, tmp_path):
    path, data = _copy(root, tmp_path)
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFileError, match=r"corrupt or truncated.*--overwrite"):
        open_split(tmp_path, "heat", "train")


def test_corrupt_chunk_is_detected_on_read(root, tmp_path):
    path, data = _copy(root, tmp_path)
    with h5py.File(root / "heat" / "train.h5", "r") as f:
        offset = f["u"].id.get_chunk_info(1).byte_offset
    raw = bytearray(data)
    raw[offset + 1000: offset + 1016] = b"\xff" * 16  # flip bytes inside operator 1's chunk
    path.write_bytes(bytes(raw))
    s = open_split(tmp_path, "heat", "train")
    s.operator(0)  # untouched chunk still reads
    with pytest.raises(DataFileError, match=r"corrupt.*regenerate"):
        s.operator(1)


def test_incomplete_file_is_refused(root, tmp_path):
    path, data = _copy(root, tmp_path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(DataFileError, match="incomplete"):
        FamilySplit(path)


def test_inconsistent_file_is_refused(root, tmp_path):
    path, data = _copy(root, tmp_path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        del f["t"]
        f.create_dataset("t", data=np.zeros(5))
    with pytest.raises(DataFileError, match="t length"):
        FamilySplit(path)
