"""Peak resident memory of training from an image folder whose decoded cache is several GB.

    python benchmarks/memory_image_folder.py [--gb 8] [--side 64] [--steps 30] [--work DIR]

Writes an image folder in the real layout (`train/<class>/*.png`, `test/<class>/*.png`,
10 classes, a tenth of the images in test/) and its cache of decoded images,
`brainprop-cache.npz`, of `--gb` GB: `--side` x `--side` RGB images of random 8x8 blocks,
written straight into the cache (as `np.savez` lays it out, under the fingerprint the
reader computes for the folder's files: `brainprop.data.own.cache_key`).  The image files
themselves are one small PNG copied: decoding hundreds of thousands of real photos would
take longer than this machine allows, and what is measured here is training from the
cache, which reads none of them.  Then, each in a fresh child process, its peak read with
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` after it ends, one child at a time:

* `mapped`: `load_dataset` of the folder (listing, fingerprint, the cache memory-mapped
  and its checksums checked: what every run after the first does), `conv` built and
  compiled with EBP, `--steps` training steps of batch 128 through `fit_input`
  (`ImageBatches`, shuffled), then one whole shuffled epoch of batches gathered
  (`ImageBatches.rows`: every image read once, in an epoch's order, without the training
  steps' time);
* `in-memory` (only with `--modes mapped,in-memory`; it needs the cache's size in free
  memory): the same with the training images first copied into memory, what reading the
  cache with `np.load` did before it was mapped.

Prints one Markdown row per child and the peak against the cache's size; deletes the
folder afterwards (disk is limited).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10
BATCH = 128


def peak_rss_mb() -> float:
    """This process's peak resident set so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def write_folder(root: Path, n_images: int, side: int) -> None:
    """root/train/<class>/ and root/test/<class>/ (`n_images` PNG files, a tenth of them
    test) and root/brainprop-cache.npz, which holds their decoded images."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from brainprop.data import own
    from brainprop.data.imagecache import CACHE_VERSION

    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    png = buffer.getvalue()
    per_class = n_images // CLASSES
    n_test = per_class // 10
    for label in range(CLASSES):
        for split, count in (("train", per_class - n_test), ("test", n_test)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for k in range(count):
                (folder / f"{k:07d}.png").write_bytes(png)
    classes, train, test = own.list_folder(root)
    labels = {name: label for label, name in enumerate(classes)}
    key = own.cache_key(root, classes, [path for _, path in train + test])
    shape = (side, side, 3)
    with zipfile.ZipFile(root / own.CACHE_NAME, "w", allowZip64=True) as cache:
        for split, listed in (("train", train), ("test", test)):
            _write_images(cache, f"x_{split}", (len(listed), *shape))
            _write_array(cache, f"y_{split}", np.array([labels[c] for c, _ in listed], np.int32))
        _write_array(cache, "version", np.int64(CACHE_VERSION))
        _write_array(cache, "fingerprint", np.str_(key))


def _write_array(cache: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with cache.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _write_images(cache: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> None:
    """Member `name` of uint8 images `shape`, random 8x8 blocks, written a chunk at a time."""
    rng = np.random.default_rng(len(name))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
              "fortran_order": False, "shape": shape}
    block = shape[1] // 8
    with cache.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, shape[0], 2000):
            cells = rng.integers(0, 256, (min(2000, shape[0] - start), 8, 8, 3), np.uint8)
            member.write(cells.repeat(block, axis=1).repeat(block, axis=2).tobytes())


def child(mode: str, folder: str, steps: int) -> dict:
    """Train from the folder in this (fresh) process; what it measured."""
    sys.path.insert(0, str(ROOT))
    from brainprop.data.datasets import dataset_spec, load_dataset

    started = time.perf_counter()
    data = load_dataset(dataset_spec(folder))
    if not (isinstance(data.x_train, np.memmap) and data.input_shape[2] == 3
            and data.input_shape[0] > 1):
        raise SystemExit("the folder was decoded again instead of read from its cache")
    x_train = np.array(data.x_train) if mode == "in-memory" else data.x_train
    load_seconds = time.perf_counter() - started
    after_load = peak_rss_mb()
    import keras

    from brainprop.data.pipeline import ImageBatches, fit_input
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model

    keras.utils.set_random_seed(1)
    model = build_model(ARCHITECTURES["conv"], RULES["EBP"], data.input_shape, data.n_classes,
                        seed=1)
    compile_model(model, RULES["EBP"], 0.1)
    batches = ImageBatches(x_train, data.y_train, BATCH, shuffle=True, seed=1)
    started = time.perf_counter()
    model.fit(fit_input(batches), epochs=1, steps_per_epoch=steps, verbose=0)
    train_seconds = time.perf_counter() - started
    after_training = peak_rss_mb()
    started = time.perf_counter()
    for index in range(len(batches)):  # a whole epoch's batches: every image read once
        batches.rows(index)
    return {"mode": mode, "train_images": len(data.y_train),
            "after_load_mb": after_load, "after_training_mb": after_training,
            "after_epoch_mb": peak_rss_mb(), "load_s": load_seconds,
            "train_s": train_seconds, "epoch_read_s": time.perf_counter() - started}


def measure(mode: str, folder: Path, steps: int, backend: str) -> dict:
    """Run `mode` in a child process; its report, with the children's peak (ru_maxrss)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder), "--steps", str(steps)],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Linux gives ru_maxrss in kB: the largest peak of any child waited for so far.
    report["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=8.0, help="decoded size of the folder")
    parser.add_argument("--side", type=int, default=64, help="image side, pixels (RGB)")
    parser.add_argument("--steps", type=int, default=30, help="training steps of batch 128")
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--modes", default="mapped")
    parser.add_argument("--work", default=None, help="where to write the folder (default: a "
                        "temporary folder)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return

    n_images = int(args.gb * 1e9 / (args.side * args.side * 3)) // CLASSES * CLASSES
    work = Path(tempfile.mkdtemp(prefix="brainprop-memory-", dir=args.work))
    try:
        folder = work / "folder"
        started = time.perf_counter()
        write_folder(folder, n_images, args.side)
        written = time.perf_counter() - started
        cache_mb = (folder / "brainprop-cache.npz").stat().st_size / 2**20
        print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"{time.strftime('%Y-%m-%d')}, {args.backend}; {n_images:,} {args.side}x"
              f"{args.side} RGB images, folder and cache written in {written:.0f} s; "
              f"cache {cache_mb:,.0f} MB; conv EBP, {args.steps} steps of batch {BATCH}, then "
              "one epoch's batches read")
        print("| mode | peak MB (ru_maxrss) | peak / cache | after load MB | after training MB "
              "| load s | train s | epoch read s |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mode in args.modes.split(","):
            r = measure(mode, folder, args.steps, args.backend)
            print(f"| {mode} | {r['children_peak_mb']:,.0f} | {r['children_peak_mb'] / cache_mb:.3f} "
                  f"| {r['after_load_mb']:,.0f} | {r['after_training_mb']:,.0f} "
                  f"| {r['load_s']:.1f} | {r['train_s']:.1f} | {r['epoch_read_s']:.1f} |",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
