"""What PyTorch itself costs: each network written in plain PyTorch, against ours.

Three contenders train the same network (EBP, one batch of synthetic images, each
architecture's own batch size), each in its own process started as the commands start
(`brainprop.utils.backend.start()`: under PyTorch, OpenMP threads that do not spin and an
allocator that keeps freed memory):

* `keras-tensorflow`, `keras-torch`: this project's model, `train_on_batch`;
* `plain-torch`: the same layers as `torch.nn` modules (`brainprop.nets.architectures`'
  declaration, read layer by layer), channels-last memory, PyTorch's own batch norm and
  SGD, softmax cross-entropy, no Keras: what PyTorch's kernels cost at the least.

Reported: the median milliseconds per step over `--steps` steps after 3 untimed ones,
the median over `--rounds` rounds (contenders alternating), and the ratios to TensorFlow.
`loccon` has no PyTorch layer to compare with and is left out.

    python benchmarks/torch_floor.py [--architectures dense conv deep] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import common

CONTENDERS = ("keras-tensorflow", "keras-torch", "plain-torch")
ARCHITECTURES = ("dense", "conv", "deep")


def plain_torch_network(architecture: str, input_shape, n_classes: int):
    import torch
    from torch import nn

    from brainprop.nets.architectures import ARCHITECTURES as SPECS
    from brainprop.utils.compat import same_padding

    spec = SPECS[architecture]
    rows, cols, channels = input_shape
    modules, features = [], None

    class SamePad(nn.Module):  # "same" padding as Keras and TensorFlow place it
        def __init__(self, pad_rows, pad_cols):
            super().__init__()
            self.pads = (*pad_cols, *pad_rows)

        def forward(self, x):
            return nn.functional.pad(x, self.pads)

    for kind, *args in spec.layers:
        if kind == "conv":
            filters, strides = args
            if spec.padding == "same" and strides == 1:
                modules.append(nn.Conv2d(channels, filters, 3, padding=1, bias=False))
                rows, cols = rows + 2, cols + 2
            else:
                if spec.padding == "same":
                    pads = [same_padding(n, 3, strides) for n in (rows, cols)]
                    modules.append(SamePad(*pads))
                    rows, cols = (n + sum(p) for n, p in zip((rows, cols), pads, strict=True))
                modules.append(nn.Conv2d(channels, filters, 3, stride=strides, bias=False))
            rows, cols = ((n - 3) // strides + 1 for n in (rows, cols))
            channels = filters
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "batchnorm":
            modules.append(nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01))
        elif kind == "maxpool":
            pool = args[0] if args else 2
            modules.append(nn.MaxPool2d(pool))
            rows, cols = rows // pool, cols // pool
        elif kind == "dropout":
            modules.append(nn.Dropout(args[0] if args else 0.0))
        elif kind == "flatten":
            modules.append(nn.Flatten())
            features = rows * cols * channels
        elif kind == "dense":
            modules.append(nn.Linear(features, args[0], bias=False))
            features = args[0]
        else:
            raise ValueError(f"no PyTorch module for {kind!r}")
    modules.append(nn.Linear(features, n_classes, bias=False))  # no biases, as ours
    network = nn.Sequential(*modules).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=spec.learning_rate,
                                weight_decay=2 * spec.l2)
    return network, optimizer


def child(contender: str, architecture: str, steps: int) -> list[float]:
    os.environ["KERAS_BACKEND"] = "tensorflow" if contender == "keras-tensorflow" else "torch"
    from brainprop.utils.backend import start

    keras = start()
    import numpy as np

    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES as SPECS
    from brainprop.nets.build import build_model, compile_model

    shape, batch = common.INPUT_SHAPES[architecture], SPECS[architecture].batch_size
    x, y = common.synthetic_batch(shape, batch)
    if contender == "plain-torch":
        import torch

        network, optimizer = plain_torch_network(architecture, shape, common.N_CLASSES)
        images = torch.as_tensor(np.asarray(x, np.float32))
        images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images
        labels = torch.as_tensor(np.asarray(y, np.int64))

        def step():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(images), labels).backward()
            optimizer.step()
    else:
        keras.utils.set_random_seed(1)
        model = build_model(SPECS[architecture], RULES["EBP"], shape, common.N_CLASSES)
        model = compile_model(model, RULES["EBP"], SPECS[architecture].learning_rate)

        def step():
            model.train_on_batch(x, y)

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES,
                        default=list(ARCHITECTURES))
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per run (default: 20, 5 for deep)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "ARCHITECTURE", "STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, architecture, steps = args.child
        print(json.dumps(child(contender, architecture, int(steps))))
        return

    figures = {}
    for architecture in args.architectures:
        steps = args.steps or (5 if architecture == "deep" else 20)
        medians = {contender: [] for contender in CONTENDERS}
        for round_ in range(args.rounds):
            order = CONTENDERS[round_ % 3:] + CONTENDERS[:round_ % 3]
            for contender in order:
                result = subprocess.run(
                    [sys.executable, __file__, "--child", contender, architecture, str(steps)],
                    capture_output=True, text=True, check=True)
                times = json.loads(result.stdout.strip().splitlines()[-1])
                medians[contender].append(statistics.median(times) * 1000)
                common.progress(f"{architecture} round {round_ + 1} {contender}: "
                                f"{medians[contender][-1]:.1f} ms/step")
        figures[architecture] = {c: statistics.median(m) for c, m in medians.items()}

    print("\n| architecture | TensorFlow ms | ours on PyTorch ms | plain PyTorch ms "
          "| ours on PyTorch / TensorFlow | plain PyTorch / TensorFlow "
          "| ours / plain PyTorch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for architecture, row in figures.items():
        tf, ours, plain = (row[c] for c in CONTENDERS)
        print(f"| {architecture} | {tf:.1f} | {ours:.1f} | {plain:.1f} | {ours / tf:.2f} "
              f"| {plain / tf:.2f} | {ours / plain:.2f} |")
    common.write_json(args.json, {"machine": common.machine(), "figures": figures})


if __name__ == "__main__":
    main()
