"""Tiny ImageNet from its extracted folder: layout, labels, grayscale, the cache, the CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from tinyimagenet_files import WNIDS, save_jpeg, smooth_image, write_tiny_imagenet

from brainprop.data import imagecache, tinyimagenet
from brainprop.data.datasets import dataset_spec, load_dataset
from brainprop.runs.cli import main
from brainprop.utils.errors import BrainPropError


@pytest.fixture
def tiny(tmp_path):
    return tmp_path, write_tiny_imagenet(tmp_path)


def forbid_decoding(monkeypatch):
    def decode(paths):
        raise AssertionError("decoded although the cache matches")

    monkeypatch.setattr(tinyimagenet, "decode_images", decode)


def count_decodes(monkeypatch) -> list:
    calls, real = [], tinyimagenet.decode_images
    monkeypatch.setattr(tinyimagenet, "decode_images", lambda paths: calls.append(1) or real(paths))
    return calls


def error_of(data_dir) -> str:
    with pytest.raises(BrainPropError) as info:
        load_dataset(dataset_spec("TinyImageNet"), data_dir)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def check_images(actual: np.ndarray, written: np.ndarray) -> None:
    """Equal up to JPEG's loss, which is far below the difference between any two images."""
    assert actual.dtype == np.uint8 and actual.shape == written.shape
    error = np.abs(actual.astype(int) - written.astype(int)).mean(axis=(1, 2, 3))
    assert error.max() < 2.5
    others = np.abs(actual[1:].astype(int) - written[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert others.min() > 10


@pytest.mark.backend_independent
def test_labels_follow_sorted_wnids_and_annotations(tiny):
    root, expected = tiny
    data = load_dataset(dataset_spec("TinyImageNet"), root)
    assert data.name == "TinyImageNet" and data.n_classes == len(WNIDS) == 3
    assert data.input_shape == (64, 64, 3)
    np.testing.assert_array_equal(data.y_train, [0, 0, 0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.y_train, expected["y_train"])
    # val_annotations.txt, line by line: file name and wnid.
    lines = (root / "tiny-imagenet-200/val/val_annotations.txt").read_text().splitlines()
    by_file = {f"val_{k}.JPEG": sorted(WNIDS).index(line.split("\t")[1]) for k, line in enumerate(lines)}
    assert data.y_test.tolist() == [by_file[line.split("\t")[0]] for line in lines]
    np.testing.assert_array_equal(data.y_test, expected["y_test"])
    check_images(data.x_train, expected["x_train"])
    check_images(data.x_test, expected["x_test"])


@pytest.mark.backend_independent
def test_grayscale_images_become_three_equal_channels(tiny):
    root, _ = tiny
    data = load_dataset(dataset_spec("TinyImageNet"), root)
    gray = Image.open(root / "tiny-imagenet-200/train/n01/images/n01_2.JPEG")
    assert gray.mode == "L"
    pixels = data.x_train[2]  # n01 is class 0; its third image (seed 3) is gray
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    np.testing.assert_array_equal(pixels[..., 0], np.asarray(gray))


@pytest.mark.backend_independent
def test_current_directory_and_the_folder_itself(tiny, monkeypatch):
    root, expected = tiny
    monkeypatch.chdir(root)
    assert load_dataset(dataset_spec("TinyImageNet")).y_test.tolist() == expected["y_test"].tolist()
    from_folder = load_dataset(dataset_spec("TinyImageNet"), root / "tiny-imagenet-200")
    assert from_folder.y_train.tolist() == expected["y_train"].tolist()


@pytest.mark.backend_independent
def test_counts_and_size_are_read_from_the_data(tmp_path):
    write_tiny_imagenet(tmp_path, n_train=(1, 5, 2), n_val=(3, 0, 1), size=32)
    data = load_dataset(dataset_spec("TinyImageNet"), tmp_path)
    assert data.input_shape == (32, 32, 3) and data.n_classes == 3
    assert len(data.x_train) == 8 and len(data.x_test) == 4
    assert np.bincount(data.y_train).tolist() == [2, 1, 5]


# --- the cache -------------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_second_load_reads_the_cache(tiny, monkeypatch):
    root, _ = tiny
    first = load_dataset(dataset_spec("TinyImageNet"), root)
    assert (root / "tiny-imagenet-200" / tinyimagenet.CACHE_NAME).is_file()
    forbid_decoding(monkeypatch)
    second = load_dataset(dataset_spec("TinyImageNet"), root)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(second, key), getattr(first, key))
    assert second.x_train.dtype == np.uint8 and second.n_classes == 3
    assert not list((root / "tiny-imagenet-200").glob(".*partial*"))


@pytest.mark.backend_independent
@pytest.mark.parametrize("change", ["add", "remove", "rewrite", "relabel"])
def test_changed_folder_invalidates_the_cache(tiny, monkeypatch, change):
    root, _ = tiny
    folder = root / "tiny-imagenet-200"
    load_dataset(dataset_spec("TinyImageNet"), root)
    n01 = folder / "train" / "n01" / "images"
    annotations = folder / "val" / "val_annotations.txt"
    if change == "add":
        save_jpeg(n01 / "n01_9.JPEG", smooth_image(50))
    elif change == "remove":
        (n01 / "n01_1.JPEG").unlink()
    elif change == "rewrite":
        save_jpeg(n01 / "n01_1.JPEG", np.zeros((64, 64, 3), np.uint8))
    else:
        annotations.write_text(annotations.read_text().replace("\tn02\t", "\tn03\t", 1))
    calls = count_decodes(monkeypatch)
    data = load_dataset(dataset_spec("TinyImageNet"), root)
    assert calls == [1]
    expected_train = {"add": 10, "remove": 8}.get(change, 9)
    assert len(data.x_train) == expected_train
    if change == "rewrite":
        assert data.x_train[1].max() < 10
    forbid_decoding(monkeypatch)
    load_dataset(dataset_spec("TinyImageNet"), root)  # rewritten, so the next load hits it again


@pytest.mark.backend_independent
def test_cache_of_another_version_or_truncated_is_rebuilt(tiny, monkeypatch):
    root, _ = tiny
    cache = root / "tiny-imagenet-200" / tinyimagenet.CACHE_NAME
    load_dataset(dataset_spec("TinyImageNet"), root)
    monkeypatch.setattr(imagecache, "CACHE_VERSION", imagecache.CACHE_VERSION + 1)
    calls = count_decodes(monkeypatch)
    load_dataset(dataset_spec("TinyImageNet"), root)
    assert calls == [1]
    cache.write_bytes(cache.read_bytes()[:1000])
    assert len(load_dataset(dataset_spec("TinyImageNet"), root).x_train) == 9 and calls == [1, 1]


@pytest.mark.backend_independent
def test_cache_with_the_right_fingerprint_but_other_arrays_is_rebuilt(tiny, monkeypatch):
    root, expected = tiny
    first = load_dataset(dataset_spec("TinyImageNet"), root)
    # Copies: the cache is written over in place below, and first's images are mapped from it.
    first_images, first_labels = np.array(first.x_train), np.array(first.y_test)
    cache = root / "tiny-imagenet-200" / tinyimagenet.CACHE_NAME
    with np.load(cache) as npz:
        kept = {"version": npz["version"], "fingerprint": npz["fingerprint"]}
    np.savez(cache, **kept, x_train=np.zeros((1, 2, 2, 3), np.uint8), y_train=np.array([99]))
    calls = count_decodes(monkeypatch)
    again = load_dataset(dataset_spec("TinyImageNet"), root)
    assert calls == [1]
    np.testing.assert_array_equal(again.x_train, first_images)
    np.testing.assert_array_equal(again.y_test, first_labels)


@pytest.mark.backend_independent
def test_training_image_that_is_a_broken_link_is_named(tiny):
    root, _ = tiny
    image = root / "tiny-imagenet-200" / "train" / "n02" / "images" / "n02_0.JPEG"
    image.unlink()
    image.symlink_to(root / "nowhere.JPEG")
    assert f"{image} is not a file (a broken link" in error_of(root)


@pytest.mark.backend_independent
def test_unwritable_cache_warns_and_still_loads(tiny, monkeypatch, capsys):
    root, _ = tiny

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(np, "savez", refuse)
    assert len(load_dataset(dataset_spec("TinyImageNet"), root).x_test) == 5
    assert "could not write the cache" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "tiny-imagenet-200").iterdir()) == [
        "test", "train", "val", "wnids.txt", "words.txt"]


@pytest.mark.backend_independent
def test_worker_processes_decode_like_one_process(tiny, monkeypatch):
    root, _ = tiny
    paths = sorted((root / "tiny-imagenet-200").glob("*/*/images/*.JPEG"))
    serial = tinyimagenet.decode_images(paths)
    monkeypatch.setattr(tinyimagenet, "POOL_MIN", 1)
    monkeypatch.setattr(tinyimagenet, "CHUNK", 3)
    monkeypatch.setattr(tinyimagenet, "_workers", lambda: 2)
    np.testing.assert_array_equal(tinyimagenet.decode_images(paths), serial)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_missing_folder_says_how_to_extract(tmp_path):
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "python tinyimagenet.py" in message
    assert "--data-dir" in message and tinyimagenet.URL in message
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(b"")
    assert "tiny-imagenet-200.zip is there but not extracted" in error_of(tmp_path)


@pytest.mark.backend_independent
def test_unknown_wnid_in_annotations(tiny):
    root, _ = tiny
    annotations = root / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text(annotations.read_text() + "val_0.JPEG\tn99\t0\t0\t1\t1\n")
    message = error_of(root)
    assert "val_annotations.txt line 6" in message and "n99" in message


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", ["../../train/n01/images/n01_0.JPEG", "/abs/val_0.JPEG",
                                  "sub/val_0.JPEG", "..", ""])
def test_annotation_naming_a_file_outside_val_images_is_refused(tiny, name):
    root, _ = tiny
    annotations = root / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    if name.startswith("/abs"):  # an image that exists, outside the folder
        outside = root / "outside.JPEG"
        outside.write_bytes((annotations.parent / "images" / "val_0.JPEG").read_bytes())
        name = str(outside)
    annotations.write_text(annotations.read_text() + f"{name}\tn01\t0\t0\t1\t1\n")
    message = error_of(root)
    assert "val_annotations.txt line 6" in message
    assert "is not the name of a file in val/images/" in message


@pytest.mark.backend_independent
def test_annotations_that_are_not_utf8_are_refused(tiny):
    root, _ = tiny
    annotations = root / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_bytes(annotations.read_bytes() + b"val_0.JPEG\tn01\xff\n")
    assert "val_annotations.txt line 6 is not UTF-8 text" in error_of(root)


@pytest.mark.backend_independent
def test_annotated_image_missing(tiny):
    root, _ = tiny
    (root / "tiny-imagenet-200" / "val" / "images" / "val_3.JPEG").unlink()
    assert "val_3.JPEG" in error_of(root)


@pytest.mark.backend_independent
def test_class_without_images(tiny):
    root, _ = tiny
    (root / "tiny-imagenet-200" / "train" / "n04" / "images").mkdir(parents=True)
    assert "n04/images has no .JPEG images" in error_of(root)


@pytest.mark.backend_independent
def test_corrupt_jpeg_is_named(tiny):
    root, _ = tiny
    bad = root / "tiny-imagenet-200" / "train" / "n02" / "images" / "n02_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    message = error_of(root)
    assert "n02_1.JPEG" in message and "extract tiny-imagenet-200.zip again" in message
    assert not (root / "tiny-imagenet-200" / tinyimagenet.CACHE_NAME).exists()


@pytest.mark.backend_independent
def test_image_of_another_size_is_named(tiny):
    root, _ = tiny
    save_jpeg(root / "tiny-imagenet-200" / "val" / "images" / "val_2.JPEG", smooth_image(1, 48))
    message = error_of(root)
    assert "val_2.JPEG is 48x48 pixels, the others 64x64" in message


# --- the command line ------------------------------------------------------------------------


def test_one_epoch_of_deep_from_the_command_line(tiny):
    root, _ = tiny
    out = root / "out"
    argv = ["TinyImageNet", "deep", "BrainProp", "-s", "--epochs", "1",
            "--data-dir", str(root), "--output-dir", str(out)]
    assert main(argv) == 0
    summary = json.loads(next(out.glob("*_summary.json")).read_text())
    assert (summary["dataset"], summary["n_classes"]) == ("TinyImageNet", 3)
    assert (summary["train_images"], summary["test_images"], summary["epochs_run"]) == (9, 5, 1)
    assert (out / summary["files"]["weights"]).is_file()


# --- the class order -------------------------------------------------------------------------


@pytest.mark.backend_independent
def test_class_order_file_renumbers_the_labels_only(tiny, monkeypatch):
    root, expected = tiny
    order = root / "order.txt"
    order.write_text("n03\nn01\n\nn02\n")  # blank lines are ignored
    sorted_data = load_dataset(dataset_spec("TinyImageNet"), root)
    assert sorted_data.classes == ("n01", "n02", "n03")
    forbid_decoding(monkeypatch)  # the cache serves every order
    data = load_dataset(dataset_spec("TinyImageNet"), root, class_order=str(order))
    assert data.classes == ("n03", "n01", "n02") and data.n_classes == 3
    unit = np.array([1, 2, 0])  # sorted position -> line of the file
    np.testing.assert_array_equal(data.y_train, unit[expected["y_train"]])
    np.testing.assert_array_equal(data.y_test, unit[expected["y_test"]])
    np.testing.assert_array_equal(data.x_train, sorted_data.x_train)
    in_order = load_dataset(dataset_spec("TinyImageNet"), root, class_order="sorted")
    assert in_order.classes == ("n01", "n02", "n03")


@pytest.mark.backend_independent
def test_listdir_order_is_the_file_systems(tiny, monkeypatch):
    root, expected = tiny
    train = root / "tiny-imagenet-200" / "train"
    (train / ".hidden").mkdir()
    (train / "notes.txt").write_text("not a class")
    real_listdir = tinyimagenet.os.listdir
    listing = {str(train): [".hidden", "n02", "notes.txt", "n03", "n01"]}
    monkeypatch.setattr(tinyimagenet.os, "listdir", lambda p: listing.get(str(p)) or real_listdir(p))
    data = load_dataset(dataset_spec("TinyImageNet"), root, class_order="listdir")
    assert data.classes == ("n02", "n03", "n01")
    np.testing.assert_array_equal(data.y_train, np.array([2, 0, 1])[expected["y_train"]])


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "content, words",
    [
        ("n01\nn02\n", "lacks n03"),
        ("n01\nn02\nn03\nn02\n", "lists twice n02"),
        ("n01\nn02\nn03\nn07\n", "lists wnids not in train/: n07"),
    ],
)
def test_bad_class_order_file_is_refused_before_decoding(tiny, monkeypatch, content, words):
    root, _ = tiny
    (root / "order.txt").write_text(content)
    forbid_decoding(monkeypatch)
    with pytest.raises(BrainPropError) as info:
        load_dataset(dataset_spec("TinyImageNet"), root, class_order=str(root / "order.txt"))
    message = str(info.value)
    assert "\n" not in message and words in message and "each of the 3 wnids" in message


@pytest.mark.backend_independent
def test_missing_class_order_file_and_other_datasets_are_refused(tiny):
    root, _ = tiny
    with pytest.raises(BrainPropError, match="no such file; give sorted, listdir or a file"):
        load_dataset(dataset_spec("TinyImageNet"), root, class_order=str(root / "nowhere.txt"))
    with pytest.raises(BrainPropError, match="--class-order numbers the classes of TinyImageNet only"):
        load_dataset(dataset_spec("MNIST"), root, class_order="listdir")
