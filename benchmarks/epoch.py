"""Seconds per epoch of every architecture, and the share of the chip's peak.

Trains BrainProp through the real input pipeline (`ImageBatches`, uint8 images scaled
per batch) on synthetic images (CIFAR shape; MNIST shape for dense), one epoch of
`--images` images per `fit` epoch, for each architecture, XLA compilation (on, off)
and dtype policy (float32; mixed_float16 and mixed_bfloat16 as `--mixed-precision` and
`--mixed-precision bfloat16` set them) in turn: the
first epoch of each compiles and is reported apart; the figure is the median of the
others. Meant for a GPU, on each backend:

    KERAS_BACKEND=jax python benchmarks/epoch.py --json epoch_gpu_jax.json
    KERAS_BACKEND=tensorflow python benchmarks/epoch.py --json epoch_gpu_tf.json
    KERAS_BACKEND=torch python benchmarks/epoch.py --json epoch_gpu_torch.json

(`--architectures deep --jit on` for CIFAR10 deep alone). It runs anywhere
(`--images 1024 --epochs 2` is a quick check on a CPU). On JAX, XLA off means eager
execution, op by op: expect it to be far slower. On PyTorch, "XLA" on is `torch.compile`
and off is eager execution, Keras' default there.

The share of the peak counts the multiply-adds of the convolution, locally connected
and dense layers (BatchNorm, ReLU, pooling and the rule itself are left out: a few
percent): forward once, and twice more for training (the input gradient and the weight
gradient), except the first layer, which needs no input gradient. Peaks are the
vendor's dense figures for the chip that is found, or `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import common
import numpy as np

# Dense (no sparsity) TFLOP/s from NVIDIA's data sheets: float32 on CUDA cores,
# TF32 and bfloat16 on tensor cores.
PEAK_TFLOPS = {
    "H100 PCIe": {"float32": 51.2, "tf32": 378.0, "bfloat16": 756.0},
    "H100": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4},
    "H200": {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4},
    "A100": {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0},
}


def layer_macs(layer, input_shape) -> int:
    """Multiply-adds of one forward pass of `layer` for one example (0 if none)."""
    import keras

    from brainprop.nets.layers import LocallyConnected2D

    output_shape = layer.compute_output_shape((1, *input_shape[1:]))
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return int(np.prod(output_shape[1:]) * kh * kw * input_shape[-1])
    if isinstance(layer, LocallyConnected2D):
        positions, window, filters = layer.kernel.shape
        return positions * window * filters
    if isinstance(layer, keras.layers.Dense):
        return int(input_shape[-1]) * layer.units
    return 0


def training_flops_per_example(model) -> int:
    """2 x multiply-adds, forward once and both gradients, the first layer's input aside."""
    flops, first = 0, True
    for layer in model.layers:
        if not layer.weights:
            continue
        macs = layer_macs(layer, layer.input.shape)
        if macs:
            flops += 2 * macs * (2 if first else 3)
            first = False
    return flops


def device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return common.machine()["cpu"]


def peak_for(name: str) -> dict[str, float] | None:
    for chip in sorted(PEAK_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        words = chip.split()
        if all(word in name for word in words):
            return PEAK_TFLOPS[chip]
    return None


JIT_CHOICES = {"auto": "auto", "on": True, "off": False}


def measure(architecture: str, policy: str, jit: str, images: int, epochs: int,
            batch: int | None) -> dict:
    """Epoch seconds of one architecture, dtype policy and compilation, as main.py
    trains it (the policy set while the model is built, as `--mixed-precision` does)."""
    import keras

    from brainprop.data.pipeline import ImageBatches, fit_input
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model
    from brainprop.train.training import EpochTimer

    arch = ARCHITECTURES[architecture]
    shape = common.INPUT_SHAPES[architecture]
    batch = batch or arch.batch_size
    keras.backend.clear_session()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(1)
        model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], shape, common.N_CLASSES,
                            batch_size=batch)
        compile_model(model, RULES["BrainProp"], arch.learning_rate, jit_compile=JIT_CHOICES[jit])
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    data = ImageBatches(
        rng.integers(0, 256, (images, *shape), dtype=np.uint8),
        rng.integers(0, common.N_CLASSES, images).astype(np.int32),
        batch,
        shuffle=True,
    )
    timer = EpochTimer()
    common.progress(f"{architecture}, {policy}, XLA {jit}: {epochs} epochs of {images} images ...")
    start = time.perf_counter()
    model.fit(fit_input(data), epochs=epochs, callbacks=[timer], shuffle=False, verbose=0)
    total = time.perf_counter() - start
    later = timer.seconds[1:]
    return {
        "batch": batch,
        "first_epoch_s": round(timer.seconds[0], 3),
        "epoch_s_median": round(float(np.median(later)), 3),
        "epoch_s_all": [round(s, 3) for s in timer.seconds],
        "total_s": round(total, 2),
        "flops_per_epoch": training_flops_per_example(model) * images,
    }


def main() -> None:
    from brainprop.utils.backend import start

    start()  # as main.py starts Keras (under PyTorch: OpenMP threads that do not spin)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(common.INPUT_SHAPES),
                        choices=list(common.INPUT_SHAPES))
    parser.add_argument("--images", type=int, default=50_000, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setting (>= 2)")
    parser.add_argument("--batch", type=int, help="default: each architecture's own")
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_float16"],
                        choices=["float32", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit", nargs="+", default=["on", "off"], choices=list(JIT_CHOICES),
                        help="XLA compilation (on JAX, off means eager execution)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the chip's peak, when it is not in the built-in table")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch compiles")
    name = device_name()
    peaks = peak_for(name) or {}
    results = {"machine": {**common.machine(), "device": name}, "images": args.images,
               "peak_tflops": peaks or args.peak_tflops, "runs": []}
    for architecture in args.architectures:
        for jit in args.jit:
            for policy in args.policies:
                row = measure(architecture, policy, jit, args.images, args.epochs, args.batch)
                achieved = row["flops_per_epoch"] / row["epoch_s_median"] / 1e12
                row["achieved_tflops"] = round(achieved, 3)
                if args.peak_tflops:
                    row["share_of_peak"] = round(achieved / args.peak_tflops, 4)
                for precision, peak in peaks.items():
                    row[f"share_of_{precision}_peak"] = round(achieved / peak, 4)
                results["runs"].append(
                    {"architecture": architecture, "jit": jit, "policy": policy, **row}
                )
                if args.json:  # after every row: a run stopped early keeps what it measured
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
