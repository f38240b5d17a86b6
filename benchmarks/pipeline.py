"""The input pipeline delivers far more images per second than training eats.

Per step, side by side in one process: draw one batch from `ImageBatches` through the
same Keras data adapter that `fit` uses on this backend (a tf.data dataset on
TensorFlow, a NumPy iterator on JAX), then run one BrainProp train step on a batch
(the project's default compilation).  The ratio of the medians is
(pipeline images/s) / (training images/s).

    KERAS_BACKEND=jax python benchmarks/pipeline.py --json pipeline_jax.json
"""

from __future__ import annotations

import argparse

import common
import numpy as np


def batch_iterator(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Batches as `fit` receives them, from the project's pipeline."""
    import keras
    from keras.src.trainers.data_adapters import get_data_adapter

    from brainprop.data.pipeline import ImageBatches

    adapter = get_data_adapter(ImageBatches(images, labels, batch_size, shuffle=True))
    if keras.backend.backend() == "tensorflow":
        return iter(adapter.get_tf_dataset())
    return iter(adapter.get_jax_iterator())


def measure(architecture: str, steps: int, warmup: int) -> dict:
    from train_step import build

    from brainprop.nets.architectures import ARCHITECTURES

    batch = ARCHITECTURES[architecture].batch_size
    shape = common.INPUT_SHAPES[architecture]
    rng = np.random.default_rng(0)
    n_images = batch * (steps + warmup + 1)
    images = rng.integers(0, 256, (n_images, *shape), dtype=np.uint8)
    labels = rng.integers(0, common.N_CLASSES, n_images).astype(np.uint8)
    batches = batch_iterator(images, labels, batch)
    model = build(architecture, "BrainProp", "auto")
    x, y = common.synthetic_batch(shape, batch)
    times = common.side_by_side(
        {"pipeline": lambda: next(batches), "train_step": lambda: model.train_on_batch(x, y)},
        steps, warmup,
    )
    pipeline, train = common.median(times["pipeline"]), common.median(times["train_step"])
    return {
        "batch": batch,
        "pipeline_images_per_s": round(batch / pipeline),
        "training_images_per_s": round(batch / train),
        "pipeline_over_training": round(train / pipeline, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["dense", "conv", "loccon"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"machine": common.machine(), "steps": args.steps, "warmup": args.warmup}
    for architecture in args.architectures:
        common.progress(f"{architecture} ...")
        results[architecture] = measure(architecture, args.steps, args.warmup)
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
