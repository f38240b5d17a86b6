"""The FLOP count behind the share of the GPU's peak (benchmarks/epoch.py)."""

import sys
from pathlib import Path

import pytest

from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import epoch  # noqa: E402

pytestmark = pytest.mark.backend_independent


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
    model = build_model(ARCHITECTURES[architecture], RULES["BrainProp"], shape, 10)

    assert epoch.training_flops_per_example(model) == expected


def test_peak_table_finds_the_chip_by_its_name_pcie_before_sxm():
    assert epoch.peak_for("NVIDIA H100 PCIe")["tf32"] == 378.0
    assert epoch.peak_for("NVIDIA H100 80GB HBM3")["tf32"] == 494.7
    assert epoch.peak_for("cpu") is None


import epoch_vs_release  # noqa: E402


def test_epoch_parts_split_each_epoch_at_validation_and_sum_to_the_epoch():
    marks = epoch_vs_release.Marks()
    marks.marks = [  # event, wall seconds, CPU seconds
        ("on_epoch_begin", 0.0, 0.0), ("on_test_begin", 3.0, 2.0), ("on_test_end", 4.0, 3.0),
        ("on_epoch_end", 4.5, 3.2), ("on_epoch_begin", 5.0, 3.5), ("on_test_begin", 7.0, 5.0),
        ("on_test_end", 8.0, 5.5), ("on_epoch_end", 8.2, 5.7), ("on_train_end", 8.5, 6.0),
    ]

    epochs = marks.epochs()

    expected = [
        {"total": 5.0, "train": 3.0, "validation": 1.0, "other": 1.0, "cpu": 3.5},
        {"total": 3.5, "train": 2.0, "validation": 1.0, "other": 0.5, "cpu": 2.5},
    ]
    assert epochs == [pytest.approx(e) for e in expected]


def test_results_section_is_replaced_and_the_rest_of_the_file_kept(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nearlier figures\n")

    epoch_vs_release.write_results("quick", "first table\n", results)
    epoch_vs_release.write_results("full", "full table\n", results)
    epoch_vs_release.write_results("quick", "second table\n", results)

    text = results.read_text()
    assert text.startswith("# Results\n\nearlier figures\n")
    assert "second table" in text and "first table" not in text
    assert text.count("full table") == 1
    assert text.index("second table") < text.index("full table")  # kept in place


import torch_floor  # noqa: E402


@pytest.mark.parametrize("architecture", torch_floor.ARCHITECTURES)
def test_plain_pytorch_network_has_the_same_layers_and_weights_as_ours(architecture):
    pytest.importorskip("torch")

    shape = (28, 28, 1) if architecture == "dense" else (32, 32, 3)
    ours = build_model(ARCHITECTURES[architecture], RULES["EBP"], shape, 10)
    plain, _ = torch_floor.plain_torch_network(architecture, shape, 10)

    kinds = {"Conv2D": "conv", "Conv2d": "conv", "Dense": "dense", "Linear": "dense",
             "BatchNormalization": "batchnorm", "BatchNorm2d": "batchnorm"}

    def weighted(layers):
        return [kinds[type(layer).__name__] for layer in layers if type(layer).__name__ in kinds]

    assert weighted(plain) == weighted(ours.layers)
    assert ([tuple(w.shape) for w in ours.trainable_weights] ==
            [tuple(p.permute(2, 3, 1, 0).shape) if p.ndim == 4 else tuple(p.T.shape)
             for p in plain.parameters()])
