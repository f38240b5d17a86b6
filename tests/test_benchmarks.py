"""The FLOP count behind the share of the GPU's peak (benchmarks/epoch.py)."""

import sys
from pathlib import Path

import pytest

from brainprop.architectures import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import epoch  # noqa: E402


def by_hand(first_macs, *other_macs):
    """2 FLOPs per multiply-add; forward only for the first layer's input side."""
    return 2 * (2 * first_macs + 3 * sum(other_macs))


@pytest.mark.parametrize(
    "architecture, expected",
    [
        # conv: 3x3 convs 3->32 (32x32 out) and 32->32 stride 2 (16x16 out),
        # dense 16*16*32 -> 500, output 500 -> 10.
        ("conv", by_hand(32 * 32 * 32 * 27, 16 * 16 * 32 * 288, 8192 * 500, 500 * 10)),
        # loccon: 900 positions x 27 x 32, 196 positions x 288 x 32, dense 6272 -> 500.
        ("loccon", by_hand(900 * 27 * 32, 196 * 288 * 32, 6272 * 500, 500 * 10)),
        # deep: 3x3 same convs 3->64, 64->64 at 32x32; 64->128, 128->128 at 16x16;
        # three 128->128 at 8x8; dense 4*4*128 -> 500.
        (
            "deep",
            by_hand(
                32 * 32 * 64 * 27, 32 * 32 * 64 * 576, 16 * 16 * 128 * 576,
                16 * 16 * 128 * 1152, *[8 * 8 * 128 * 1152] * 3, 2048 * 500, 500 * 10,
            ),
        ),
        # dense on MNIST: 784 -> 1500 -> 1000 -> 500 -> 10.
        ("dense", by_hand(784 * 1500, 1500 * 1000, 1000 * 500, 500 * 10)),
    ],
)
def test_training_flops_count_every_weighted_layer_once_forward_and_twice_back(
    architecture, expected
):
    shape = (28, 28, 1) if architecture == "dense" else (32, 32, 3)
    model = build_model(architecture, "BrainProp", shape, 10)

    assert epoch.training_flops_per_example(model) == expected


def test_peak_table_finds_the_chip_by_its_name_pcie_before_sxm():
    assert epoch.peak_for("NVIDIA H100 PCIe")["tf32"] == 378.0
    assert epoch.peak_for("NVIDIA H100 80GB HBM3")["tf32"] == 494.7
    assert epoch.peak_for("cpu") is None
