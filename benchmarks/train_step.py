"""The rule's cost over EBP, and XLA on against off, per architecture.

For each architecture, four models take turns on the same batch through the real
training path (`train_on_batch`, i.e. Keras' compiled train function): BrainProp and
EBP, each compiled with `jit_compile=True` and `jit_compile=False`.  Ratios are medians
of per-step ratios.

    KERAS_BACKEND=jax python benchmarks/train_step.py --json jax.json
"""

from __future__ import annotations

import argparse

import common


def build(architecture: str, algorithm: str, jit_compile: bool):
    import keras

    from brainprop.model.rules import RULES
    from brainprop.nets.architectures import ARCHITECTURES
    from brainprop.nets.build import build_model, compile_model

    keras.utils.set_random_seed(1)
    arch, rule = ARCHITECTURES[architecture], RULES[algorithm]
    model = build_model(arch, rule, common.INPUT_SHAPES[architecture], common.N_CLASSES)
    return compile_model(model, rule, arch.learning_rate, jit_compile=jit_compile)


def measure(architecture: str, steps: int, warmup: int, batch: int | None) -> dict:
    from brainprop.nets.architectures import ARCHITECTURES

    batch = batch or ARCHITECTURES[architecture].batch_size
    x, y = common.synthetic_batch(common.INPUT_SHAPES[architecture], batch)
    models = {
        f"{algorithm}_xla_{'on' if jit else 'off'}": build(architecture, algorithm, jit)
        for algorithm in ("BrainProp", "EBP")
        for jit in (True, False)
    }
    times = common.side_by_side(
        {name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()},
        steps,
        warmup,
    )
    return {
        "batch": batch,
        "median_ms": {name: round(1000 * common.median(t), 2) for name, t in times.items()},
        "brainprop_over_ebp": {
            jit: round(common.ratio(times, f"BrainProp_xla_{jit}", f"EBP_xla_{jit}"), 3)
            for jit in ("on", "off")
        },
        "xla_on_over_off": {
            algorithm: round(
                common.ratio(times, f"{algorithm}_xla_on", f"{algorithm}_xla_off"), 3
            )
            for algorithm in ("BrainProp", "EBP")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=list(common.INPUT_SHAPES))
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch", type=int, help="batch size (default: the architecture's)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {"machine": common.machine(), "steps": args.steps, "warmup": args.warmup}
    for architecture in args.architectures:
        common.progress(f"{architecture} ...")
        results[architecture] = measure(architecture, args.steps, args.warmup, args.batch)
        common.progress(f"{architecture}: {results[architecture]}")
    common.write_json(args.json, results)


if __name__ == "__main__":
    main()
