"""Writers of Tiny ImageNet in its real on-disk formats, for the tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# Created out of order: the loader must sort them (n01 -> 0, n02 -> 1, n03 -> 2).
WNIDS = ("n02", "n03", "n01")


def smooth_image(seed: int, size: int = 64, gray: bool = False) -> np.ndarray:
    """A low-frequency image (survives JPEG nearly intact), distinct for every seed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)
    channels = 1 if gray else 3
    image = np.empty((size, size, channels))
    for c in range(channels):
        a, b, offset = rng.uniform(-1, 1, 3)
        image[..., c] = 128 + 100 * np.clip(a * ramp[:, None] + b * ramp[None, :] + offset, -1, 1)
    image = image.round().astype(np.uint8)
    return image[..., 0] if gray else image


def class_image(label: int, seed: int, size: int = 64) -> np.ndarray:
    """An image of class `label`: the class's colour and stripe direction, plus noise."""
    palette = np.random.default_rng(1000 + label).integers(40, 216, 3)
    ramp = np.linspace(-1, 1, size)
    stripes = np.sin(6 * (ramp[:, None] if label % 2 else ramp[None, :]) + label)
    noise = np.random.default_rng(seed).normal(0, 12, (size, size, 3))
    image = palette + 30 * stripes[..., None] + noise
    return np.clip(image, 0, 255).round().astype(np.uint8)


def save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=95)


def write_tiny_imagenet(
    root: Path, n_train=(3, 2, 4), n_val=(2, 1, 2), size=64, wnids=WNIDS, by_class=False
) -> dict:
    """root/tiny-imagenet-200/ as the official zip holds it; every third image grayscale.

    `n_train` and `n_val` count the images of each of `wnids`.  With `by_class` every
    image shows its class (`class_image`, sorted position), so a network can learn them.
    Returns the expected labels and the written (pre-JPEG) images, as RGB, per split.
    """
    folder = root / "tiny-imagenet-200"
    order = sorted(wnids)
    seed = 0
    expected = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    (folder / "train").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for wnid in order:  # the loader's order: sorted wnids, then sorted file names
        count = n_train[wnids.index(wnid)]
        boxes = []
        for i in range(count):
            seed += 1
            image = _image(order.index(wnid), seed, size, by_class)
            save_jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n")
            expected["x_train"].append(image)
            expected["y_train"].append(order.index(wnid))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    val_labels = [w for w in wnids for _ in range(n_val[wnids.index(w)])][::-1]
    for k, wnid in enumerate(val_labels):
        seed += 1
        image = _image(order.index(wnid), seed, size, by_class)
        save_jpeg(folder / "val" / "images" / f"val_{k}.JPEG", image)
        lines.append(f"val_{k}.JPEG\t{wnid}\t{k % 7}\t3\t{size - 2}\t{size - 5}\n")
        expected["x_test"].append(image)
        expected["y_test"].append(order.index(wnid))
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    save_jpeg(folder / "test" / "images" / "test_0.JPEG", smooth_image(999, size))
    for key in ("x_train", "x_test"):
        expected[key] = np.stack([np.dstack([x] * 3) if x.ndim == 2 else x for x in expected[key]])
    return {k: np.asarray(v) for k, v in expected.items()}


def _image(label: int, seed: int, size: int, by_class: bool) -> np.ndarray:
    if by_class:
        return class_image(label, seed, size)
    return smooth_image(seed, size, gray=seed % 3 == 0)


def zip_folder(folder: Path, zip_path: Path, skip: str = "", prefix: str = "tiny-imagenet-200/") -> Path:
    """Pack `folder`'s files as `prefix`<relative path> (stored, so bytes can be corrupted)."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            name = path.relative_to(folder).as_posix()
            if name == skip:
                continue
            archive.write(path, prefix + name + ("/" if path.is_dir() else ""))
    return zip_path
