"""Peak host memory of training `deep` on Tiny ImageNet, ours against the original approach.

    python benchmarks/memory_tinyimagenet.py [--backends tensorflow,jax] [--steps 4]

Writes two folders in the real layout (`tiny-imagenet-200/train/<wnid>/images/*.JPEG`,
`val/images` + `val/val_annotations.txt`; 64x64 JPEGs, every 50th grayscale, 200 classes)
scaled down in count, and runs each approach in its own process on each, reading the peak
resident set (VmHWM) there:

* `ours-first`: first load (decode, write the cache), then a few training steps of deep
  with BrainProp through `ImageBatches` (uint8 in memory, scaled per batch);
* `ours-cached`: the same with the cache already written (every later run);
* `original`: the arrays divided by 255 into float64 copies of both splits (what the
  original release did), then the same steps with `fit` on those arrays.

The per-image cost is the slope between the two sizes, the fixed cost (framework, model,
batches in flight: on a CPU this includes the activations of a batch of 128) the rest of
the larger run's peak; the estimate for the real data set is fixed + slope x 110,000.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_IMAGES = 110_000
APPROACHES = ("ours-first", "ours-cached", "original")


def peak_rss_mb() -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def write_folder(root: Path, classes: int, per_class: int, seed: int = 0) -> int:
    """tiny-imagenet-200/ under `root` with per_class training and per_class/10 val images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(classes)]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)

    def save(path: Path, k: int) -> None:
        # Blocky, noisy images: JPEG sizes near the real ones' (a few KB).
        image = np.kron(np.roll(base, k, axis=0), np.ones((8, 8, 1), np.uint8))
        image = (image + rng.integers(0, 40, image.shape)).astype(np.uint8)
        mode = "L" if k % 50 == 0 else "RGB"
        Image.fromarray(image).convert(mode).save(path, format="JPEG", quality=90)

    count = 0
    annotations = []
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            save(images / f"{wnid}_{i}.JPEG", count)
            count += 1
        for _ in range(max(1, per_class // 10)):
            name = f"val_{len(annotations)}.JPEG"
            save(folder / "val" / "images" / name, count)
            annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
            count += 1
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return count


def child(approach: str, data_dir: str, steps: int) -> dict:
    """Run one approach in this (fresh) process; its peaks in MB."""
    sys.path.insert(0, str(ROOT))
    from brainprop.data.datasets import dataset_spec, load_dataset

    started = time.perf_counter()
    data = load_dataset(dataset_spec("TinyImageNet"), data_dir)
    load_seconds = time.perf_counter() - started
    import keras

    from brainprop.data.pipeline import ImageBatches
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model

    keras.utils.set_random_seed(1)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if approach == "original":
        del data
        x_train, x_test = x_train / 255.0, x_test / 255.0  # float64, the uint8 arrays freed
    after_load = peak_rss_mb()
    model = build_model(ARCHITECTURES["deep"], RULES["BrainProp"], x_train.shape[1:],
                        int(y_train.max()) + 1, seed=1)
    compile_model(model, RULES["BrainProp"], 0.1)
    if approach == "original":
        model.fit(x_train, y_train, batch_size=128, epochs=1, steps_per_epoch=steps,
                  validation_data=(x_test, y_test), validation_steps=2, verbose=0)
    else:
        model.fit(ImageBatches(x_train, y_train, 128, shuffle=True), epochs=1,
                  steps_per_epoch=steps, validation_data=ImageBatches(x_test, y_test, 128),
                  validation_steps=2, verbose=0, shuffle=False)
    return {"images": len(x_train) + len(x_test), "after_load_mb": after_load,
            "peak_mb": peak_rss_mb(), "load_s": load_seconds}


def measure(approach: str, backend: str, data_dir: Path, steps: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, __file__, "--child", approach, str(data_dir), "--steps", str(steps)],
        env=env, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{approach} on {backend} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", default="10,100", help="training images per class, two sizes")
    parser.add_argument("--steps", type=int, default=4, help="training steps of batch 128")
    parser.add_argument("--child", nargs=2, metavar=("APPROACH", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return

    sizes = [int(n) for n in args.per_class.split(",")]
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}; {args.steps} steps of batch 128 (+2 validation)")
    print("| backend | approach | images (small, large) | peak MB (small, large) "
          "| bytes/image | fixed MB | est. peak at 110,000 images | load s (large) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as work:
        folders = []
        for per_class in sizes:
            folder = Path(work) / f"n{per_class}"
            write_folder(folder, args.classes, per_class)
            folders.append(folder)
        for backend in args.backends.split(","):
            for approach in APPROACHES:
                runs = []
                for folder in folders:
                    if approach == "ours-first":
                        (folder / "tiny-imagenet-200" / "brainprop-cache.npz").unlink(missing_ok=True)
                    runs.append(measure(approach, backend, folder, args.steps))
                (small, large) = runs
                slope = (large["peak_mb"] - small["peak_mb"]) / (large["images"] - small["images"])
                fixed = large["peak_mb"] - slope * large["images"]  # framework, model, batches
                estimate = fixed + slope * REAL_IMAGES
                print(f"| {backend} | {approach} | {small['images']:,}, {large['images']:,} "
                      f"| {small['peak_mb']:.0f}, {large['peak_mb']:.0f} "
                      f"| {slope * 2**20:,.0f} | {fixed:.0f} | {estimate / 1024:.2f} GiB "
                      f"| {large['load_s']:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
