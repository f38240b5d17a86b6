"""The paper's results (Tables 1 and 2 of Pozzi, Bohte & Roelfsema, 2020), as data, and
the tables `reproduce` runs and the report shows (`TABLE_SPECS`): the paper's two and the
comparison of feedback kinds.

Every figure is mean(std) over 10 seeds.  The paper's "Epochs [#]" and "Accuracy [%]"
were both read off the validation curve, which was the test set.

Which networks the paper trained on which data set is declared with the data sets
(`DatasetSpec.paper_architectures`); the rows of each table are read from there.
"""

from __future__ import annotations

import dataclasses

from brainprop.data.datasets import paper_combinations


@dataclasses.dataclass(frozen=True)
class PaperResult:
    epochs: float
    epochs_std: float
    accuracy: float  # percent
    accuracy_std: float


# (dataset, architecture) -> {algorithm: result}, for each combination of the paper.
PAPER_RESULTS: dict[tuple[str, str], dict[str, PaperResult]] = {
    ("MNIST", "dense"): {
        "BrainProp": PaperResult(51, 19, 98.68, 0.07), "EBP": PaperResult(33, 19, 98.54, 0.16)
    },
    ("MNIST", "conv"): {
        "BrainProp": PaperResult(63, 18, 99.31, 0.04), "EBP": PaperResult(51, 13, 99.39, 0.03)
    },
    ("MNIST", "loccon"): {
        "BrainProp": PaperResult(65, 19, 99.05, 0.06), "EBP": PaperResult(70, 28, 99.06, 0.06)
    },
    ("CIFAR10", "conv"): {
        "BrainProp": PaperResult(125, 47, 69.30, 0.75), "EBP": PaperResult(145, 44, 70.69, 0.78)
    },
    ("CIFAR10", "loccon"): {
        "BrainProp": PaperResult(151, 35, 64.92, 0.32), "EBP": PaperResult(171, 48, 64.31, 0.54)
    },
    ("CIFAR100", "conv"): {
        "BrainProp": PaperResult(110, 34, 34.07, 0.50), "EBP": PaperResult(102, 61, 36.56, 0.87)
    },
    ("CIFAR100", "loccon"): {
        "BrainProp": PaperResult(229, 30, 30.04, 0.33), "EBP": PaperResult(43, 26, 31.53, 0.48)
    },
    ("CIFAR10", "deep"): {
        "BrainProp": PaperResult(105, 4, 88.88, 0.27), "EBP": PaperResult(97, 17, 88.48, 0.55)
    },
    ("CIFAR100", "deep"): {
        "BrainProp": PaperResult(218, 22, 59.58, 0.46), "EBP": PaperResult(101, 1, 63.39, 0.42)
    },
    ("TinyImageNet", "deep"): {
        "BrainProp": PaperResult(328, 75, 47.50, 1.30), "EBP": PaperResult(101, 46, 47.35, 3.06)
    },
}

FEEDBACK_TABLE = "feedback"


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A table that `reproduce` runs and the report shows."""

    title: str  # the report's heading
    contents: str  # what it holds, for `reproduce --help`
    # The paper's networks in it, in its row order within a data set; None: one data set
    # and network of the user's choice (`--only DATASET/ARCH`), its columns the kinds of
    # feedback.
    architectures: tuple[str, ...] | None

    @property
    def compares_feedback(self) -> bool:
        return self.architectures is None


# Every table, declared once: `reproduce`'s choices and help, the report's sections.
TABLE_SPECS: dict[str, TableSpec] = {
    "table1": TableSpec(
        title="Table 1: fully connected (dense), convolutional (conv) and locally "
        "connected (loccon) networks",
        contents="dense, conv, loccon on MNIST, CIFAR10, CIFAR100",
        architectures=("dense", "conv", "loccon"),
    ),
    "table2": TableSpec(
        title="Table 2: the deep convolutional network",
        contents="deep on CIFAR10, CIFAR100, TinyImageNet",
        architectures=("deep",),
    ),
    FEEDBACK_TABLE: TableSpec(
        title="Feedback: each rule with each kind of feedback (--feedback)",
        contents="both rules with every kind of --feedback (--feedback-kinds), on the data "
        "set and network --only DATASET/ARCH names",
        architectures=None,
    ),
}


def _rows(architectures: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The paper's combinations of these networks: (dataset, architecture), in the
    paper's row order (data sets as declared, then `architectures`' order)."""
    return tuple((dataset, architecture)
                 for dataset, trained in paper_combinations().items()
                 for architecture in architectures if architecture in trained)


# Which (dataset, architecture) rows make up each table of the paper, in its order.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    table: _rows(spec.architectures) for table, spec in TABLE_SPECS.items()
    if spec.architectures is not None
}

TABLE_TITLES = {table: spec.title for table, spec in TABLE_SPECS.items()}


def table_of(dataset: str, architecture: str) -> str | None:
    """The paper's table ("table1" or "table2") that holds this row, or None."""
    for table, rows in TABLES.items():
        if (dataset, architecture) in rows:
            return table
    return None
