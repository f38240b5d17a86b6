"""The paper's tables: their rows are the combinations declared with the data sets, in
the paper's order, and each row has the paper's figures for both of its rules."""

import pytest

from brainprop.data.datasets import paper_combinations
from brainprop.tables.paper import PAPER_RESULTS, TABLES, table_of

pytestmark = pytest.mark.backend_independent


def test_the_tables_hold_the_papers_rows_in_its_order():
    assert TABLES == {
        "table1": (("MNIST", "dense"), ("MNIST", "conv"), ("MNIST", "loccon"),
                   ("CIFAR10", "conv"), ("CIFAR10", "loccon"),
                   ("CIFAR100", "conv"), ("CIFAR100", "loccon")),
        "table2": (("CIFAR10", "deep"), ("CIFAR100", "deep"), ("TinyImageNet", "deep")),
    }


def test_every_combination_of_the_paper_is_a_row_of_one_table():
    rows = [row for table in TABLES.values() for row in table]
    declared = {(dataset, arch) for dataset, archs in paper_combinations().items() for arch in archs}
    assert len(rows) == len(set(rows)) and set(rows) == declared


def test_every_row_has_the_papers_figures_for_both_rules():
    rows = {row for table in TABLES.values() for row in table}
    assert set(PAPER_RESULTS) == rows
    for results in PAPER_RESULTS.values():
        assert set(results) == {"BrainProp", "EBP"}


def test_table_of_a_combination():
    assert table_of("MNIST", "loccon") == "table1"
    assert table_of("TinyImageNet", "deep") == "table2"
    assert table_of("MNIST", "deep") is None and table_of("FashionMNIST", "dense") is None
