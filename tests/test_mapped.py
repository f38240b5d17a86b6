"""Images that stay on disk: a cache's arrays memory-mapped, checked, read a batch at a time."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_own import write_folder

from brainprop.data import own
from brainprop.data.datasets import build_dataset, dataset_spec, load_dataset
from brainprop.data.imagecache import load_cache, save_cache
from brainprop.data.mapped import Rows, is_mapped, load_mapped, release_pages, take_rows
from brainprop.train.validation import hold_out

pytestmark = pytest.mark.backend_independent


def arrays(seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (20, 6, 5, 3), dtype=np.uint8),
            "y_train": np.arange(20, dtype=np.int32) % 4,
            "x_test": rng.integers(0, 256, (7, 6, 5, 3), dtype=np.uint8),
            "y_test": np.arange(7, dtype=np.int32) % 4}


def test_every_array_of_an_npz_is_mapped_with_its_values(tmp_path):
    expected = arrays()
    np.savez(tmp_path / "a.npz", **expected)
    loaded = load_mapped(tmp_path / "a.npz")
    assert loaded.keys() == expected.keys()
    for name, array in loaded.items():
        assert isinstance(array, np.memmap) and not array.flags.writeable
        np.testing.assert_array_equal(array, expected[name])
        assert array.dtype == expected[name].dtype


def test_arrays_named_in_memory_are_read_not_mapped(tmp_path):
    np.savez(tmp_path / "a.npz", **arrays(), version=np.int64(1))
    loaded = load_mapped(tmp_path / "a.npz", in_memory=("version",))
    assert not isinstance(loaded["version"], np.memmap) and int(loaded["version"]) == 1
    assert isinstance(loaded["x_train"], np.memmap)


def test_a_compressed_npz_is_not_mapped(tmp_path):
    np.savez_compressed(tmp_path / "a.npz", **arrays())
    with pytest.raises(ValueError, match="compressed"):
        load_mapped(tmp_path / "a.npz")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_a_cut_short_npz_is_refused(tmp_path, keep):
    np.savez(tmp_path / "a.npz", **arrays())
    content = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(content[: int(len(content) * keep)])
    with pytest.raises((ValueError, OSError, zipfile.BadZipFile)):
        load_mapped(tmp_path / "a.npz")


def test_a_changed_byte_in_the_images_fails_the_checksum(tmp_path):
    expected = arrays()
    np.savez(tmp_path / "a.npz", **expected)
    content = bytearray((tmp_path / "a.npz").read_bytes())
    at = bytes(content).index(expected["x_train"].tobytes()[:64]) + 100
    content[at] ^= 0xFF
    (tmp_path / "a.npz").write_bytes(bytes(content))
    with pytest.raises(ValueError, match="checksum"):
        load_mapped(tmp_path / "a.npz")


def test_the_cache_returns_maps_and_none_for_a_damaged_file(tmp_path):
    cache = tmp_path / "cache.npz"
    save_cache(cache, "key", arrays())
    loaded = load_cache(cache, "key")
    assert all(isinstance(array, np.memmap) for array in loaded.values())
    assert set(loaded) == {"x_train", "y_train", "x_test", "y_test"}
    assert load_cache(cache, "other key") is None
    cache.write_bytes(cache.read_bytes()[:-40])  # the zip's directory cut off
    assert load_cache(cache, "key") is None


def test_an_image_folder_trains_from_maps_equal_to_its_decoded_images(tmp_path):
    root = tmp_path / "folder"
    expected = write_folder(root)
    first = load_dataset(dataset_spec(str(root)))  # decoded, written, mapped back
    again = load_dataset(dataset_spec(str(root)))  # from the cache
    for data in (first, again):
        assert isinstance(data.x_train, np.memmap) and isinstance(data.x_test, np.memmap)
        np.testing.assert_array_equal(data.x_train, expected["x_train"])
        np.testing.assert_array_equal(data.x_test, expected["x_test"])


def test_a_cache_written_partially_is_decoded_again(tmp_path):
    root = tmp_path / "folder"
    expected = write_folder(root)
    load_dataset(dataset_spec(str(root)))
    cache = root / own.CACHE_NAME
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    data = load_dataset(dataset_spec(str(root)))
    np.testing.assert_array_equal(data.x_train, expected["x_train"])
    assert isinstance(data.x_train, np.memmap)
    with zipfile.ZipFile(cache) as z:  # written again, whole
        assert z.testzip() is None


def mapped_images(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = arrays()
    np.savez(tmp_path / "a.npz", **expected)
    return load_mapped(tmp_path / "a.npz")["x_train"], expected["x_train"]


def test_rows_of_a_map_gather_the_rows_fancy_indexing_would_copy(tmp_path):
    mapped, images = mapped_images(tmp_path)
    indices = np.array([5, 2, 19, 0, 7])
    rows = take_rows(mapped, indices)
    assert isinstance(rows, Rows) and is_mapped(rows)
    assert rows.shape == (5, 6, 5, 3) and rows.dtype == np.uint8 and len(rows) == 5
    for key in (slice(1, 4), np.array([4, 0, 2]), 3):
        np.testing.assert_array_equal(rows[key], images[indices][key])
    np.testing.assert_array_equal(np.asarray(rows), images[indices])
    nested = take_rows(rows, np.array([4, 1]))
    np.testing.assert_array_equal(nested[:], images[indices][[4, 1]])


def test_rows_of_an_array_in_memory_are_a_copy():
    images = arrays()["x_train"]
    rows = take_rows(images, np.array([3, 1]))
    assert type(rows) is np.ndarray and not is_mapped(rows)
    np.testing.assert_array_equal(rows, images[[3, 1]])


def test_released_pages_read_back_the_same_values(tmp_path):
    mapped, images = mapped_images(tmp_path)
    np.testing.assert_array_equal(mapped[3:9], images[3:9])
    release_pages(mapped[3:9])
    release_pages(images)  # an array in memory: nothing to release
    np.testing.assert_array_equal(mapped, images)


def test_a_validation_split_of_mapped_images_copies_none(tmp_path):
    mapped, images = mapped_images(tmp_path)
    labels = np.arange(20) % 4
    data = build_dataset("folder", (mapped, labels, mapped[:3], labels[:3]), 4, "test")
    split = hold_out(data, 0.25)
    in_memory = hold_out(build_dataset("folder", (images, labels, images[:3], labels[:3]),
                                       4, "test"), 0.25)
    assert isinstance(split.x_train, Rows) and isinstance(split.x_val, Rows)
    assert split.x_train.base is mapped and split.x_val.base is mapped
    np.testing.assert_array_equal(np.asarray(split.x_train), in_memory.x_train)
    np.testing.assert_array_equal(np.asarray(split.x_val), in_memory.x_val)
    np.testing.assert_array_equal(split.y_val, in_memory.y_val)
    assert split.input_shape == (6, 5, 3)
