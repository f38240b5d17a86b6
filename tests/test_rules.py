"""A learning rule is declared once: a rule declared here, and nowhere else, reaches the
command line, a real run's summary and plot, and the report."""

import dataclasses
import json

import matplotlib.axes
import numpy as np
import pytest
from synthetic import bright_rows

from brainprop.model.rules import RULES, Rule, get_rule, register
from brainprop.runs.cli import build_parser, main
from brainprop.tables.report import write_report
from brainprop.utils.errors import BrainPropError

# BrainProp that never explores: always the greedy class.
GREEDY = dataclasses.replace(
    RULES["BrainProp"], name="Greedy", epsilon=0.0,
    training_accuracy="training (greedy reward rate)", color="tab:green",
)


@pytest.fixture
def greedy():
    register(GREEDY)
    yield GREEDY
    del RULES[GREEDY.name]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (x_train, y_train), (x_test, y_test) = bright_rows(256, 0), bright_rows(128, 1)
    np.savez(folder / "mnist.npz", x_train=x_train[..., 0], y_train=y_train.astype("uint8"),
             x_test=x_test[..., 0], y_test=y_test.astype("uint8"))
    return folder


def test_the_paper_rules_are_declared_in_the_paper_order():
    assert list(RULES) == ["BrainProp", "EBP"]
    assert RULES["BrainProp"].epsilon == 0.02 and RULES["EBP"].epsilon is None
    assert RULES["BrainProp"].loss is None and RULES["EBP"].loss is not None


def test_a_declared_rule_is_a_choice_of_the_command_line(greedy, capsys):
    assert build_parser().parse_args(["MNIST", "dense", "Greedy"]).algorithm == "Greedy"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "{BrainProp,EBP,Greedy}" in capsys.readouterr().out


def test_an_undeclared_rule_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["MNIST", "dense", "Greedy"])
    assert exit_.value.code == 2
    assert "invalid choice: 'Greedy'" in capsys.readouterr().err
    with pytest.raises(BrainPropError, match="choose BrainProp or EBP"):
        get_rule("Greedy")


def test_a_rule_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register(Rule("EBP", RULES["EBP"].model))


def test_print_config_shows_the_rule_and_its_exploration_rate(greedy, capsys):
    assert main(["MNIST", "dense", "Greedy", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["algorithm"] == "Greedy"
    assert config["hyperparameters"]["epsilon"] == 0.0


def test_a_run_of_the_rule_is_summarised_plotted_and_reported(greedy, data_dir, tmp_path,
                                                               monkeypatch):
    labels, colors = [], []
    plot = matplotlib.axes.Axes.plot

    def recording_plot(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        colors.append(kwargs.get("color"))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    out = tmp_path / "runs"
    assert main(["MNIST", "dense", "Greedy", "-s", "--epochs", "1", "--data-dir", str(data_dir),
                 "--output-dir", str(out), "--verbose", "0"]) == 0
    summary = json.loads((out / "MNIST_dense_Greedy_seed1_summary.json").read_text())
    assert summary["algorithm"] == "Greedy" and summary["hyperparameters"]["epsilon"] == 0.0
    assert "training (greedy reward rate)" in labels  # the run's accuracy plot

    colors.clear()
    written = write_report(out)
    table = (out / "report" / "tables.md").read_text()
    assert "| MNIST | dense | Greedy | 1 |" in table
    assert out / "report" / "figure5.png" in written
    assert colors[0] == "tab:green"  # the report's curve of the rule, in its colour
