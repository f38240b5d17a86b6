"""Your own images: an .npz or a folder of one subfolder per class, written by each test
in the real formats (np.savez; PNG and JPEG by Pillow)."""

import argparse
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainprop.data import own
from brainprop.data.datasets import dataset_spec, load_dataset
from brainprop.runs.cli import main
from brainprop.runs.plan import plan_run
from brainprop.runs.runconfig import RunConfig, dataset_argument
from brainprop.utils.errors import BrainPropError

# --- writers of the real formats -------------------------------------------------------------


def pattern(label: int, seed: int, size=(12, 10), gray=False) -> np.ndarray:
    """An image of class `label` (a bright band in its own rows) over noise."""
    height, width = size
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, (height, width, 1 if gray else 3)).astype(np.uint8)
    rows = slice(2 * label % height, 2 * label % height + 3)
    image[rows] = 200 + 20 * (np.arange(1 if gray else 3) % 2)
    return image[..., 0] if gray else image


def write_folder(root: Path, counts=None, size=(12, 10), gray=False, suffix=".png") -> dict:
    """root/train/<class>/*.png and root/test/<class>/*.png; counts: class -> (train, test).

    Classes are created out of sorted order.  Returns the images and labels as the loader
    must give them (classes sorted by name, files sorted by name).
    """
    counts = counts or {"zebra": (3, 2), "ant": (2, 1), "moth": (4, 2)}
    classes = sorted(counts)
    expected = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    seed = 0
    for name in counts:
        for split, n in zip(("train", "test"), counts[name], strict=True):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                image = pattern(classes.index(name), seed, size, gray)
                Image.fromarray(image).save(folder / f"img{i:03d}{suffix}")
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            for path in sorted(folder.glob("*")) if folder.is_dir() else []:
                with Image.open(path) as image:
                    array = np.asarray(image)
                expected[f"x_{split}"].append(array[..., None] if array.ndim == 2 else array)
                expected[f"y_{split}"].append(classes.index(name))
    return {key: np.array(value) for key, value in expected.items()}


def write_npz(path: Path, **override) -> dict:
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.integers(0, 256, (7, 9, 11, 3), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 3, 4, 0, 1]),
        "x_test": rng.integers(0, 256, (3, 9, 11, 3), dtype=np.uint8),
        "y_test": np.array([4, 2, 0]),
    }
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def error_of(path, **kwargs) -> str:
    with pytest.raises(BrainPropError) as info:
        load_dataset(dataset_spec(str(path)), **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# --- an .npz ---------------------------------------------------------------------------------


def test_npz_of_any_size_and_number_of_classes(tmp_path):
    arrays = write_npz(tmp_path / "shapes.npz")
    data = load_dataset(dataset_spec(str(tmp_path / "shapes.npz")))
    assert (data.name, data.n_classes, data.input_shape) == ("shapes", 5, (9, 11, 3))
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, key), arrays[key])
    assert data.y_train.dtype == np.int32 and data.classes is None


@pytest.mark.parametrize("shape", [(7, 9, 11), (7, 9, 11, 1)])
def test_npz_grayscale_images_get_one_channel(tmp_path, shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    write_npz(tmp_path / "gray.npz", x_train=x, x_test=x[:3])
    data = load_dataset(dataset_spec(str(tmp_path / "gray.npz")))
    assert data.input_shape == (9, 11, 1)
    np.testing.assert_array_equal(data.x_train, x.reshape(7, 9, 11, 1))


def test_npz_integer_images_within_0_to_255_are_taken_as_uint8(tmp_path):
    x = np.arange(7 * 4 * 4).reshape(7, 4, 4).astype(np.int64) % 256
    write_npz(tmp_path / "ints.npz", x_train=x, x_test=x[:3])
    data = load_dataset(dataset_spec(str(tmp_path / "ints.npz")))
    assert data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[..., 0], x)


@pytest.mark.parametrize("override, words", [
    ({"x_train": np.zeros((7, 9, 11, 3), np.float32)}, ["x_train", "float32", "np.round"]),
    ({"x_train": np.full((7, 9, 11), 300, np.int16)}, ["x_train", "300", "0 to 255"]),
    ({"x_train": np.zeros((7, 9, 11, 2), np.uint8)}, ["x_train", "(7, 9, 11, 2)", "channels last"]),
    ({"x_test": np.zeros((3, 3, 9, 11), np.uint8)}, ["x_test", "np.moveaxis"]),
    ({"x_train": np.zeros((7, 99), np.uint8)}, ["x_train", "(7, 99)"]),
    ({"x_test": np.zeros((3, 9, 12, 3), np.uint8)}, ["(9, 12, 3)", "same image shape"]),
    ({"y_train": np.array([0, 1, 2, 3, 4, 0])}, ["y_train", "6 labels for 7 images"]),
    ({"y_train": np.array([0, 1, 2, 3, -1, 0, 1])}, ["y_train", "negative", "-1"]),
    ({"y_test": np.array([0.5, 1, 2])}, ["y_test", "float64", "integers"]),
    ({"y_train": np.array([0, 1, 2, 4, 4, 0, 1])}, ["class 3", "no training image", "0 to K-1"]),
    ({"y_test": np.array([9, 2, 0])}, ["0 to 9", "class 5, 6, 7, 8, 9"]),
    ({"y_train": np.zeros(7, int), "y_test": np.zeros(3, int)}, ["two classes"]),
    ({"x_test": np.zeros((0, 9, 11, 3), np.uint8), "y_test": np.zeros(0, int)},
     ["test split has no images"]),
])
def test_npz_bad_contents_are_refused_in_one_line(tmp_path, override, words):
    write_npz(tmp_path / "bad.npz", **override)
    message = error_of(tmp_path / "bad.npz")
    for word in words:
        assert word in message


def test_npz_missing_array(tmp_path):
    np.savez(tmp_path / "few.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=[0, 1])
    message = error_of(tmp_path / "few.npz")
    assert "x_test, y_test" in message and "has x_train, y_train" in message


def test_a_single_array_saved_as_npz_is_refused(tmp_path):
    with open(tmp_path / "single.npz", "wb") as f:
        np.save(f, np.zeros((2, 4, 4), np.uint8))
    assert "single array" in error_of(tmp_path / "single.npz")


def test_npz_with_pickled_objects_is_refused_and_never_run(tmp_path):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    labels = np.empty(7, object)
    labels[:] = [Payload()] * 7
    write_npz(tmp_path / "evil.npz", y_train=labels)
    message = error_of(tmp_path / "evil.npz")
    assert "evil.npz" in message and not ran.exists()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_npz(tmp_path, keep):
    write_npz(tmp_path / "cut.npz")
    content = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(content[: int(len(content) * keep)])
    message = error_of(tmp_path / "cut.npz")
    assert "cut.npz" in message and "cannot read it" in message


# --- a folder of one subfolder per class -----------------------------------------------------


def test_folder_classes_sorted_and_images_exact(tmp_path):
    expected = write_folder(tmp_path / "bugs")
    data = load_dataset(dataset_spec(str(tmp_path / "bugs")))
    assert (data.name, data.classes, data.n_classes) == ("bugs", ("ant", "moth", "zebra"), 3)
    assert data.input_shape == (12, 10, 3)
    for key, value in expected.items():
        np.testing.assert_array_equal(getattr(data, key), value)


def test_folder_of_grayscale_images_keeps_one_channel(tmp_path):
    expected = write_folder(tmp_path / "gray", gray=True)
    data = load_dataset(dataset_spec(str(tmp_path / "gray")))
    assert data.input_shape == (12, 10, 1)
    np.testing.assert_array_equal(data.x_train, expected["x_train"])


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_folder_of_jpegs(tmp_path, suffix):
    write_folder(tmp_path / "jpegs", suffix=suffix)
    data = load_dataset(dataset_spec(str(tmp_path / "jpegs")))
    assert len(data.y_train) == 9 and len(data.y_test) == 5


def test_folder_ignores_hidden_and_other_files_and_test_classes_may_be_missing(tmp_path):
    root = tmp_path / "mixed"
    write_folder(root, counts={"a": (2, 1), "b": (2, 0)})
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / ".hidden.png").write_bytes(b"not an image either")
    (root / "train" / ".cache").mkdir()
    data = load_dataset(dataset_spec(str(root)))
    assert data.classes == ("a", "b") and len(data.y_train) == 4 and list(data.y_test) == [0]


def test_folder_is_decoded_once_then_read_from_its_cache(tmp_path, monkeypatch):
    root = tmp_path / "cached"
    write_folder(root)
    first = load_dataset(dataset_spec(str(root)))
    assert (root / own.CACHE_NAME).is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("brainprop.data.tinyimagenet.decode_images", no_decoding)
    again = load_dataset(dataset_spec(str(root)))
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert again.classes == first.classes


def test_a_changed_folder_is_decoded_again(tmp_path):
    root = tmp_path / "changing"
    write_folder(root)
    load_dataset(dataset_spec(str(root)))
    Image.fromarray(pattern(0, 99)).save(root / "train" / "ant" / "new.png")
    assert len(load_dataset(dataset_spec(str(root))).y_train) == 10


def test_a_cache_with_the_right_fingerprint_but_other_arrays_is_decoded_again(tmp_path):
    root = tmp_path / "planted"
    expected = write_folder(root)
    load_dataset(dataset_spec(str(root)))
    with np.load(root / own.CACHE_NAME) as npz:
        kept = {"version": npz["version"], "fingerprint": npz["fingerprint"]}
    # Written in place: the first load's arrays, mapped from this file, are no reference.
    np.savez(root / own.CACHE_NAME, **kept, y_train=np.array([7]))
    again = load_dataset(dataset_spec(str(root)))
    np.testing.assert_array_equal(again.x_train, expected["x_train"])
    np.testing.assert_array_equal(again.y_train, expected["y_train"])


def folder_error(root: Path) -> str:
    message = error_of(root)
    assert not (root / own.CACHE_NAME).exists()  # nothing half-written, nothing cached
    assert not [p for p in root.rglob("*") if "partial" in p.name]
    return message


def test_folder_without_test(tmp_path):
    root = tmp_path / "notest"
    write_folder(root)
    for path in (root / "test").rglob("*.png"):
        path.unlink()
    for folder in sorted((root / "test").iterdir()):
        folder.rmdir()
    (root / "test").rmdir()
    message = folder_error(root)
    assert "no test/ folder" in message and "train/<class>/" in message


def test_folder_without_train(tmp_path):
    (tmp_path / "empty" / "test").mkdir(parents=True)
    assert "no train/ folder" in folder_error(tmp_path / "empty")


def test_folder_of_one_class(tmp_path):
    root = tmp_path / "lonely"
    write_folder(root, counts={"cats": (2, 1)})
    message = folder_error(root)
    assert "train has only cats" in message and "two classes or more" in message


def test_folder_with_an_empty_class(tmp_path):
    root = tmp_path / "gap"
    write_folder(root)
    (root / "train" / "void").mkdir()
    message = folder_error(root)
    assert "train/void" in message and "no .png/.jpg/.jpeg images" in message


def test_folder_with_a_test_class_train_lacks(tmp_path):
    root = tmp_path / "stray"
    write_folder(root)
    (root / "test" / "unicorn").mkdir()
    assert "unicorn" in folder_error(root)


def test_folder_with_no_test_images(tmp_path):
    root = tmp_path / "few"
    write_folder(root, counts={"a": (2, 0), "b": (1, 0)})
    assert "test has no" in folder_error(root)


def test_folder_of_mixed_image_sizes(tmp_path):
    root = tmp_path / "sizes"
    write_folder(root)
    Image.fromarray(pattern(1, 5, size=(12, 11))).save(root / "train" / "moth" / "wide.png")
    message = folder_error(root)
    assert "wide.png" in message and "11x12" in message and "one size" in message
    assert "--image-size HxW" in message


# --- --image-size ----------------------------------------------------------------------------


def write_mixed_sizes(root: Path) -> dict[str, list[Path]]:
    """Two classes of PNGs and JPEGs of four sizes and two aspect ratios, one gray."""
    files = {"train": [], "test": []}
    sizes = [(12, 10), (30, 40), (9, 9), (16, 12)]
    for split, count in (("train", 4), ("test", 2)):
        for label, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                size = sizes[(i + label) % len(sizes)]
                suffix = ".jpg" if i % 2 else ".png"
                path = root / split / name / f"img{i}{suffix}"
                Image.fromarray(pattern(label, 10 * label + i, size, gray=i == 3)).save(path)
                files[split].append(path)
    return files


def resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What a person gets from Pillow: the file as RGB, stretched bilinearly to (H, W)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size[1], size[0]),
                                                       Image.Resampling.BILINEAR))


def test_a_folder_of_mixed_sizes_is_resized_to_the_image_size(tmp_path):
    root = tmp_path / "photos"
    files = write_mixed_sizes(root)
    data = load_dataset(dataset_spec(str(root)), image_size=(14, 18))
    assert data.x_train.shape == (8, 14, 18, 3) and data.x_test.shape == (4, 14, 18, 3)
    for split, images in (("train", data.x_train), ("test", data.x_test)):
        for image, path in zip(images, files[split], strict=True):
            np.testing.assert_array_equal(image, resized(path, (14, 18)))
    assert data.y_train.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (root / "brainprop-cache-14x18.npz").is_file()
    assert not (root / own.CACHE_NAME).exists()


def test_images_of_the_image_size_already_are_not_changed(tmp_path):
    root = tmp_path / "same"
    expected = write_folder(root)
    data = load_dataset(dataset_spec(str(root)), image_size=(12, 10))
    np.testing.assert_array_equal(data.x_train, expected["x_train"])


def test_each_image_size_is_cached_apart(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    write_mixed_sizes(root)
    decoded, decode = [], own.tinyimagenet.decode_images

    def counting(paths, **kwargs):
        decoded.append(kwargs.get("size"))
        return decode(paths, **kwargs)

    monkeypatch.setattr(own.tinyimagenet, "decode_images", counting)
    small = load_dataset(dataset_spec(str(root)), image_size=(8, 8))
    again = load_dataset(dataset_spec(str(root)), image_size=(8, 8))
    assert decoded == [(8, 8)]  # the same size reuses its cache
    np.testing.assert_array_equal(again.x_train, small.x_train)
    large = load_dataset(dataset_spec(str(root)), image_size=(20, 16))
    assert decoded == [(8, 8), (20, 16)]  # another size decodes again
    assert large.x_train.shape[1:3] == (20, 16)
    load_dataset(dataset_spec(str(root)), image_size=(8, 8))
    assert decoded == [(8, 8), (20, 16)]  # and leaves the first size's cache alone
    assert {p.name for p in root.glob("brainprop-cache*")} == {
        "brainprop-cache-8x8.npz", "brainprop-cache-20x16.npz"}


def test_a_cache_of_another_size_under_the_name_is_never_trusted(tmp_path):
    root = tmp_path / "photos"
    files = write_mixed_sizes(root)
    load_dataset(dataset_spec(str(root)), image_size=(8, 8))
    (root / "brainprop-cache-8x8.npz").rename(root / "brainprop-cache-10x10.npz")
    data = load_dataset(dataset_spec(str(root)), image_size=(10, 10))
    np.testing.assert_array_equal(data.x_train[0], resized(files["train"][0], (10, 10)))


@pytest.mark.parametrize("text, size", [
    ("32", (32, 32)), ("32x48", (32, 48)), (" 24 X 16 ", (24, 16)), ("4096x1", (4096, 1)),
])
def test_image_sizes_are_height_by_width_or_one_number(text, size):
    assert own.parse_image_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "32x", "x32", "32x48x3", "-3", "3.5", "0", "32x0",
                                  "5000", "３２", "32*32"])
def test_other_image_sizes_are_refused_in_one_line(text):
    with pytest.raises(BrainPropError) as info:
        own.parse_image_size(text)
    assert "image size" in str(info.value) and "\n" not in str(info.value)


def test_the_image_size_is_refused_for_data_that_are_no_image_folder(tmp_path):
    write_npz(tmp_path / "arrays.npz")
    message = error_of(tmp_path / "arrays.npz", image_size=(8, 8))
    assert "--image-size" in message and ".npz" in message and "drop --image-size" in message
    with pytest.raises(BrainPropError, match="MNIST is not one: drop --image-size"):
        load_dataset(dataset_spec("MNIST"), image_size=(8, 8))
    with pytest.raises(BrainPropError, match="TinyImageNet is not one"):
        load_dataset(dataset_spec("TinyImageNet"), tmp_path, image_size=(8, 8))


@pytest.mark.parametrize("damage", ["garbage", "truncated png", "truncated jpeg"])
def test_folder_with_an_unreadable_image(tmp_path, damage):
    root = tmp_path / "broken"
    write_folder(root)
    buffer = io.BytesIO()
    Image.fromarray(pattern(0, 7)).save(buffer, "JPEG" if "jpeg" in damage else "PNG")
    content = b"\x89PNG not really" if damage == "garbage" else buffer.getvalue()[:60]
    bad = root / "test" / "moth" / ("bad.jpg" if "jpeg" in damage else "bad.png")
    bad.write_bytes(content)
    message = folder_error(root)
    assert "cannot decode" in message and "bad." in message and "replace or remove" in message


def test_a_stale_or_damaged_cache_is_never_trusted(tmp_path):
    root = tmp_path / "damaged"
    expected = write_folder(root)
    load_dataset(dataset_spec(str(root)))
    cache = root / own.CACHE_NAME
    cache.write_bytes(cache.read_bytes()[:100])
    data = load_dataset(dataset_spec(str(root)))
    np.testing.assert_array_equal(data.x_train, expected["x_train"])
    with zipfile.ZipFile(cache) as z:  # written again, whole
        assert z.testzip() is None


# --- names and the command line --------------------------------------------------------------


@pytest.mark.parametrize("text, name", [
    ("data/images.npz", "images"), ("my images/", "my-images"), ("x/été.v2", "-t-.v2"),
    ("plain", "plain"),
])
def test_a_path_is_named_after_its_file_or_folder(text, name):
    assert own.path_name(text) == name.lstrip(".-")


def test_the_current_folder_is_named_after_itself(tmp_path, monkeypatch):
    (tmp_path / "shelf").mkdir()
    monkeypatch.chdir(tmp_path / "shelf")
    assert own.path_name(".") == "shelf"


def test_run_names_of_a_path_use_its_name(tmp_path):
    write_npz(tmp_path / "shapes.npz")
    plan = plan_run(RunConfig(str(tmp_path / "shapes.npz"), "conv", "EBP", seed=3))
    assert plan.name == "shapes_conv_EBP_seed3"
    assert not plan.paper_combination


@pytest.mark.parametrize("make, words", [
    (lambda p: p / "nowhere", ["no such file or folder"]),
    (lambda p: (p / "list.txt").write_text("x") and p / "list.txt", ["not an .npz"]),
])
def test_the_dataset_argument_refuses_what_it_cannot_read(tmp_path, make, words):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        dataset_argument(str(make(tmp_path)))
    for word in words:
        assert word in str(info.value)


def test_the_dataset_argument_refuses_an_unknown_name():
    with pytest.raises(argparse.ArgumentTypeError) as info:
        dataset_argument("SVHN")
    assert "invalid choice: 'SVHN'" in str(info.value) and ".npz" in str(info.value)


def test_data_dir_is_refused_for_a_path(tmp_path):
    write_npz(tmp_path / "shapes.npz")
    config = RunConfig(str(tmp_path / "shapes.npz"), "conv", "EBP", data_dir=str(tmp_path))
    with pytest.raises(BrainPropError) as info:
        plan_run(config)
    assert "drop --data-dir" in str(info.value)
    assert "drop --data-dir" in error_of(tmp_path / "shapes.npz", data_dir=tmp_path)


def test_a_folder_of_mixed_sizes_trains_with_image_size_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "photos"
    write_mixed_sizes(root)
    base = [str(root), "conv", "EBP", "--epochs", "1", "--batch-size", "4", "--verbose", "0"]
    assert main(base) == 2  # refused before training: one line that names the option
    refusal = capsys.readouterr().err.strip()
    assert "\n" not in refusal and "one size" in refusal and "--image-size HxW" in refusal

    out = tmp_path / "out"
    assert main([*base, "--image-size", "10", "-s", "--output-dir", str(out)]) == 0
    summary = json.loads((out / "photos_conv_EBP_seed1_summary.json").read_text())
    assert summary["config"]["image_size"] == "10x10"
    assert summary["train_images"] == 8 and summary["classes"] == ["cat", "dog"]
    assert (root / "brainprop-cache-10x10.npz").is_file()
    assert "--image-size 10 " in summary["command"]  # as typed

    write_npz(tmp_path / "arrays.npz")
    assert main([str(tmp_path / "arrays.npz"), "conv", "EBP", "--image-size", "10"]) == 2
    assert "drop --image-size" in capsys.readouterr().err
