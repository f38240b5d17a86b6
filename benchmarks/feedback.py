"""Seconds per epoch and memory of each kind of feedback against `symmetric`, side by side.

For every architecture, one network per kind (`--feedback KIND`: symmetric, random, sign,
kolen-pollack, direct), built and compiled as main.py builds them, trains on the same
synthetic uint8 images through the real input pipeline; the kinds take turns, one `fit`
epoch of `--images` images each, the order rotating every round (common.side_by_side), so
drift on a shared machine hits them alike. The figure per kind is the median over rounds of
its epoch's seconds over symmetric's in the same round; the first round (compilation) is
dropped. Memory: each kind trains a few epochs in a fresh process and reports its peak
resident memory, and the parameters each network holds (the feedback weights B are W's
shape: they double the weights of a network where B is stored, loccon's above all).

    python benchmarks/feedback.py [--architectures conv loccon] [--rule EBP] [--json FILE]
    KERAS_BACKEND=jax python benchmarks/feedback.py --json feedback_jax.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

import common
import numpy as np

KINDS = ("symmetric", "random", "sign", "kolen-pollack", "direct")


def network(architecture: str, rule_name: str, kind: str, images: int):
    """The network of `architecture` with feedback `kind`, compiled as main.py compiles it,
    and a call that trains it one epoch on `images` synthetic images."""
    from brainprop.data.pipeline import ImageBatches, fit_input
    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model

    arch = ARCHITECTURES[architecture]
    shape = common.INPUT_SHAPES[architecture]
    rule = dataclasses.replace(RULES[rule_name], feedback=kind)
    model = build_model(arch, rule, shape, common.N_CLASSES, seed=1, batch_size=arch.batch_size)
    compile_model(model, rule, arch.learning_rate)
    rng = np.random.default_rng(0)
    data = ImageBatches(rng.integers(0, 256, (images, *shape), dtype=np.uint8),
                        rng.integers(0, common.N_CLASSES, images).astype(np.int32),
                        arch.batch_size, shuffle=True)

    def epoch() -> None:
        model.fit(fit_input(data), epochs=1, shuffle=False, verbose=0)

    return model, epoch


def speed(architecture: str, rule: str, images: int, rounds: int) -> dict:
    """Each kind's epoch seconds (median) and its ratio to symmetric's, taken in turns."""
    contenders = {}
    for kind in KINDS:
        common.progress(f"{architecture} {rule}: building {kind} ...")
        contenders[kind] = network(architecture, rule, kind, images)[1]
    common.progress(f"{architecture} {rule}: {rounds} rounds of one epoch of {images} images "
                    f"per kind ...")
    times = common.side_by_side(contenders, steps=rounds, warmup=1)
    return {kind: {"epoch_s_median": round(common.median(times[kind]), 3),
                   "over_symmetric": round(common.ratio(times, kind, "symmetric"), 3)}
            for kind in KINDS}


def _peak_rss_mib() -> float:
    # VmHWM starts afresh in a new process; ru_maxrss would keep the parent's peak.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(architecture: str, rule: str, kind: str, images: int) -> None:
    """Train a few epochs; print the peak resident MiB and the network's parameters."""
    model, epoch = network(architecture, rule, kind, images)
    for _ in range(3):
        epoch()
    print(f"{_peak_rss_mib():.0f} {model.count_params()}")


def memory(architecture: str, rule: str, images: int) -> dict:
    results = {}
    for kind in KINDS:
        common.progress(f"{architecture} {rule} {kind}: memory ...")
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", architecture, rule, kind, str(images)],
            env=os.environ, capture_output=True, text=True, check=True,
        ).stdout.split()
        results[kind] = {"peak_rss_mib": float(out[-2]), "parameters": int(out[-1])}
    symmetric = results["symmetric"]
    for kind in KINDS:
        results[kind]["rss_over_symmetric"] = round(
            results[kind]["peak_rss_mib"] / symmetric["peak_rss_mib"], 3)
        results[kind]["parameters_over_symmetric"] = round(
            results[kind]["parameters"] / symmetric["parameters"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["dense", "conv", "loccon", "deep"],
                        choices=list(common.INPUT_SHAPES))
    parser.add_argument("--rule", default="BrainProp", choices=["BrainProp", "EBP"])
    parser.add_argument("--images", type=int, default=2048,
                        help="images per timed epoch (default: 2048)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="timed epochs per kind, after one that compiles (default: 5)")
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.memory_child:
        architecture, rule, kind, images = args.memory_child
        memory_child(architecture, rule, kind, int(images))
        return
    results = {"machine": common.machine(), "rule": args.rule, "images": args.images,
               "rounds": args.rounds, "architectures": {}}
    for architecture in args.architectures:
        entry = {"speed": speed(architecture, args.rule, args.images, args.rounds)}
        if not args.no_memory:
            entry["memory"] = memory(architecture, args.rule, args.images)
        results["architectures"][architecture] = entry
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
