"""The report: known runs give known tables, and the figures are valid images."""

import csv
import io
import json
import pickle

import numpy as np
import pytest
from filesystems import read_only_folder
from PIL import Image

from brainprop.tables.report import curve_band, load_runs, main, write_report
from brainprop.utils.errors import BrainPropError

pytestmark = pytest.mark.backend_independent


def write_run(folder, dataset, architecture, algorithm, seed, best_epoch, accuracy,
              epochs_run, stem_suffix="", test_accuracy=None, n_classes=10, feedback=None,
              more_history=None):
    """A summary and history pickle as main.py -s writes them, with chosen numbers; with
    `feedback`, recorded as main.py records it (and named in the stem unless symmetric)."""
    kind = f"_{feedback}" if feedback not in (None, "symmetric") else ""
    stem = f"{dataset}_{architecture}_{algorithm}{kind}_seed{seed}{stem_suffix}"
    curve = [accuracy * (e + 1) / best_epoch if e < best_epoch else accuracy
             for e in range(epochs_run)]
    history = {
        "accuracy": curve, "val_accuracy": curve, "loss": [0.1] * epochs_run,
        "val_class_accuracy": [[min(1.0, v * (k + 1) / 5) for k in range(n_classes)] for v in curve],
        **(more_history or {}),
    }
    with open(folder / f"{stem}_history.pkl", "wb") as f:
        pickle.dump([dataset, algorithm, history], f)
    summary = {
        "dataset": dataset, "architecture": architecture, "algorithm": algorithm, "seed": seed,
        "best_epoch": best_epoch, "best_val_accuracy": accuracy, "epochs_run": epochs_run,
        "files": {"history": f"{stem}_history.pkl", "summary": f"{stem}_summary.json"},
    }
    if test_accuracy is not None:
        summary["test_accuracy_at_best_epoch"] = test_accuracy
    if feedback is not None:
        summary["hyperparameters"] = {"feedback": feedback}
        summary["config"] = {"feedback": feedback}
    (folder / f"{stem}_summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for seed, epoch, acc in [(1, 10, 0.97), (2, 20, 0.98), (3, 30, 0.99)]:
        write_run(runs, "MNIST", "dense", "BrainProp", seed, epoch, acc, epoch + 45)
    # A second run of seed 1 (a numbered stem) must not count twice.
    write_run(runs, "MNIST", "dense", "BrainProp", 1, 99, 0.10, 100, stem_suffix="_2")
    write_run(runs, "MNIST", "dense", "EBP", 1, 4, 0.5, 6, test_accuracy=0.981)
    write_run(runs, "MNIST", "dense", "EBP", 2, 8, 0.5, 9, test_accuracy=0.985)
    write_run(runs, "CIFAR10", "deep", "EBP", 1, 100, 0.88, 145)
    written = write_report(runs)
    return runs / "report", written


def _csv_rows(out):
    rows = list(csv.DictReader(io.StringIO((out / "tables.csv").read_text())))
    return {(r["dataset"], r["architecture"], r["algorithm"]): r for r in rows}


def test_tables_give_mean_and_sample_std_over_seeds(report):
    rows = _csv_rows(report[0])
    brainprop = rows[("MNIST", "dense", "BrainProp")]
    assert (brainprop["table"], brainprop["n_seeds"], brainprop["seeds"]) == ("table1", "3", "1 2 3")
    assert float(brainprop["best_epoch_mean"]) == 20 and float(brainprop["best_epoch_std"]) == 10
    assert float(brainprop["epochs_run_mean"]) == 65
    assert float(brainprop["accuracy_mean"]) == pytest.approx(98.0)
    assert float(brainprop["accuracy_std"]) == pytest.approx(1.0)
    assert float(brainprop["paper_accuracy_mean"]) == 98.68
    assert float(brainprop["accuracy_diff"]) == pytest.approx(98.0 - 98.68)
    assert float(brainprop["epochs_diff"]) == 20 - 51


def test_tables_use_test_accuracy_of_the_best_epoch_when_validation_was_held_out(report):
    ebp = _csv_rows(report[0])[("MNIST", "dense", "EBP")]
    assert float(ebp["accuracy_mean"]) == pytest.approx(98.3)
    assert float(ebp["accuracy_std"]) == pytest.approx(np.std([98.1, 98.5], ddof=1))
    assert ebp["accuracy_on"].startswith("test, best epoch on held-out")


def test_single_seed_has_no_std_and_lands_in_table_2(report):
    deep = _csv_rows(report[0])[("CIFAR10", "deep", "EBP")]
    assert (deep["table"], deep["n_seeds"], deep["accuracy_std"]) == ("table2", "1", "")
    markdown = (report[0] / "tables.md").read_text()
    assert ("| CIFAR10 | deep | EBP | 1 | 100.0 | 97(17) | +3.0 | 145.0 | 88.00 | 88.48(0.55) | -0.48 |"
            in markdown)
    assert "Epochs = epoch of best validation accuracy" in markdown
    assert markdown.index("## Table 1") < markdown.index("## Table 2")


def test_markdown_row_shows_mean_std_beside_the_paper(report):
    markdown = (report[0] / "tables.md").read_text()
    assert ("| MNIST | dense | BrainProp | 3 | 20.0(10.0) | 51(19) | -31.0 | 65.0(10.0) "
            "| 98.00(1.00) | 98.68(0.07) | -0.68 |") in markdown


def test_figures_are_valid_png_and_pdf(report):
    out, written = report
    names = {p.name for p in written}
    assert names == {"tables.md", "tables.csv", "figure5.png", "figure5.pdf",
                     "class_discovery.png", "class_discovery.pdf"}
    for name in ("figure5", "class_discovery"):
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        with Image.open(out / f"{name}.png") as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] >= 500


def test_curve_band_averages_the_runs_still_training_at_each_epoch():
    epochs, mean, std = curve_band([[0.1, 0.3, 0.5], [0.3, 0.5]])
    np.testing.assert_array_equal(epochs, [1, 2, 3])
    np.testing.assert_allclose(mean, [0.2, 0.4, 0.5])
    np.testing.assert_allclose(std[:2], [np.sqrt(0.02)] * 2)
    assert np.isnan(std[2])  # one run left: no spread


def test_class_run_option_picks_the_named_run(report, tmp_path):
    runs = report[0].parent
    assert main([str(runs), "--out", str(tmp_path), "--class-run", "MNIST_dense_EBP_seed2"]) == 0
    assert (tmp_path / "class_discovery.png").exists()


@pytest.mark.parametrize("setup", ["empty", "missing", "broken"])
def test_bad_runs_folder_is_refused_in_one_line(tmp_path, capsys, setup):
    folder = tmp_path / "runs"
    if setup != "missing":
        folder.mkdir()
    if setup == "broken":
        (folder / "x_summary.json").write_text("{not json")
    assert main([str(folder)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("report: error:")


# --- untrusted runs folders ---------------------------------------------------------------


def _one_error(capsys) -> str:
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("report: error:"), errors
    return errors[0]


def _history_names(summary_path):
    return json.loads(summary_path.read_text())["files"]


def test_history_pickle_that_runs_code_is_refused_and_never_run(tmp_path, capsys):
    from hostile import Payload

    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    marker = tmp_path / "marker"
    history = {"val_accuracy": Payload(marker, [0.5, 0.9, 0.9])}
    (tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl").write_bytes(
        pickle.dumps(["MNIST", "BrainProp", history]))
    assert main([str(tmp_path)]) == 2
    line = _one_error(capsys)
    assert not marker.exists()
    assert "MNIST_dense_BrainProp_seed1_history.pkl" in line and "refused" in line


@pytest.mark.parametrize("name", ["../outside_history.pkl", "/tmp/x_history.pkl", "sub/x.pkl", ".."])
def test_summary_naming_a_file_outside_its_folder_is_refused(tmp_path, capsys, name):
    runs = tmp_path / "runs"
    runs.mkdir()
    write_run(runs, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    history = runs / "MNIST_dense_BrainProp_seed1_history.pkl"
    (tmp_path / "outside_history.pkl").write_bytes(history.read_bytes())
    path = runs / "MNIST_dense_BrainProp_seed1_summary.json"
    summary = json.loads(path.read_text())
    summary["files"]["history"] = name
    path.write_text(json.dumps(summary))
    assert main([str(runs)]) == 2
    assert "not a file beside it" in _one_error(capsys)


@pytest.mark.parametrize("content", [
    pickle.dumps({"val_accuracy": [0.5]}), pickle.dumps(["MNIST", "EBP"]),
    pickle.dumps(["MNIST", "EBP", {"val_accuracy": "high"}]),
    pickle.dumps(["MNIST", "EBP", {"val_accuracy": [0.5, 0.6]}])[:20], b"",
    b"not a pickle at all",
], ids=["dict", "short-list", "text-values", "truncated", "empty", "text"])
def test_foreign_or_truncated_history_pickle_is_refused_in_one_line(tmp_path, capsys, content):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    (tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl").write_bytes(content)
    assert main([str(tmp_path)]) == 2
    assert "MNIST_dense_BrainProp_seed1_history.pkl" in _one_error(capsys)


@pytest.mark.parametrize("key, value", [
    ("seed", [1]), ("seed", -1), ("seed", True), ("dataset", {"MNIST": 1}), ("algorithm", ""),
    ("best_val_accuracy", "high"), ("best_val_accuracy", float("-inf")),
    ("best_val_accuracy", 1e308), ("best_val_accuracy", float("nan")),
    ("test_accuracy_at_best_epoch", 1.5), ("best_epoch", "two"), ("epochs_run", 10**400),
    ("files", ["history"]), ("hyperparameters", {"max_epochs": "many"}),
    ("hyperparameters", {"feedback": 3}), ("config", {"feedback": ""}), ("config", "random"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else value or "empty")
def test_summary_with_a_value_of_the_wrong_type_is_refused_in_one_line(
    tmp_path, capsys, key, value
):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    path = tmp_path / "MNIST_dense_BrainProp_seed1_summary.json"
    summary = json.loads(path.read_text())
    summary[key] = value
    path.write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"report: error: {path} is not a run summary (") and key in line
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("history", [
    {"val_accuracy": [0.5, 10**400]}, {"val_accuracy": [0.5, float("inf")]},
    {"val_accuracy": [0.5, -0.1]}, {"val_accuracy": [[0.5], [0.6]]},
    {"val_class_accuracy": [0.5, 0.6]}, {"val_class_accuracy": [[0.5, 0.6], [0.5]]},
    {"loss": 0.5}, {"loss": {"1": 0.5}},
], ids=["huge-int", "inf", "negative", "2d-accuracy", "1d-per-class", "ragged", "number",
        "mapping"])
def test_history_with_values_of_the_wrong_type_or_range_is_refused_in_one_line(
    tmp_path, capsys, history
):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    path = tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl"
    path.write_bytes(pickle.dumps(["MNIST", "BrainProp", history]))
    assert main([str(tmp_path)]) == 2
    assert f"{path} is not a run history (metric" in _one_error(capsys)


def test_history_with_metrics_of_different_lengths_is_refused_in_one_line(tmp_path, capsys):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    path = tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl"
    history = {"val_accuracy": [0.5, 0.9], "val_class_accuracy": [[0.5, 0.5]] * 3}
    path.write_bytes(pickle.dumps(["MNIST", "BrainProp", history]))
    assert main([str(tmp_path)]) == 2
    assert "metrics cover different numbers of epochs" in _one_error(capsys)


def test_history_with_per_class_accuracy_only_gives_a_report_without_that_plot(tmp_path):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    path = tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl"
    history = {"accuracy": [0.5, 0.9], "val_class_accuracy": [[0.5, 0.5]] * 2}
    path.write_bytes(pickle.dumps(["MNIST", "BrainProp", history]))
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "report" / "class_discovery.png").exists()


def test_a_folder_of_ignored_runs_only_says_so_in_one_line(tmp_path, capsys):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    path = tmp_path / "MNIST_dense_BrainProp_seed1_summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "interrupted": True}))
    assert main([str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"report: {path.name} is an interrupted run (resume it); ignored"
    assert lines[1].startswith(f"report: error: no finished run in {tmp_path}, only the runs "
                               "ignored above")


def _release_history_pickle(protocol: int, numpy_1: bool = False) -> bytes:
    """As the original release wrote it (tf.keras 2.x): floats for the metrics, NumPy
    float32 scalars for the learning rate its LearningRateScheduler logs."""
    history = {"loss": [1.1, 0.9], "accuracy": [0.3, 0.4], "val_loss": [1.0, 0.95],
               "val_accuracy": [0.42, 0.5], "lr": [np.float32(0.1), np.float32(0.1)]}
    data = pickle.dumps(["MNIST", "BrainProp", history], protocol=protocol)
    if numpy_1:  # NumPy 1.x names its module numpy.core (text GLOBAL opcode in protocol 2)
        assert b"numpy._core.multiarray\nscalar" in data
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return data


@pytest.mark.parametrize("protocol,numpy_1", [(2, True), (2, False), (3, False), (4, False)])
def test_history_pickles_of_the_original_release_still_load(tmp_path, protocol, numpy_1):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.5, 2)
    (tmp_path / "MNIST_dense_BrainProp_seed1_history.pkl").write_bytes(
        _release_history_pickle(protocol, numpy_1))
    [run] = load_runs(tmp_path)
    assert run.history["val_accuracy"] == [0.42, 0.5]
    assert run.history["lr"] == pytest.approx([0.1, 0.1])


def test_json_history_is_read_and_the_pickle_left_alone(tmp_path):
    from brainprop.runs.outputs import write_history_json

    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.5, 2)
    stem = "MNIST_dense_BrainProp_seed1"
    write_history_json(tmp_path / f"{stem}_history.json", "MNIST", "BrainProp",
                       {"val_accuracy": [0.25, float("nan")], "accuracy": [0.1, 0.2]})
    path = tmp_path / f"{stem}_summary.json"
    summary = json.loads(path.read_text())
    summary["files"]["history_json"] = f"{stem}_history.json"
    path.write_text(json.dumps(summary))
    (tmp_path / f"{stem}_history.pkl").write_bytes(b"never read")
    [run] = load_runs(tmp_path)
    assert run.history["accuracy"] == [0.1, 0.2]
    assert run.history["val_accuracy"][0] == 0.25 and np.isnan(run.history["val_accuracy"][1])


def test_report_on_a_diverged_run_leaves_it_out_and_says_so(tmp_path, capsys):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 2, 1, 0.5, 1)
    path = tmp_path / "MNIST_dense_BrainProp_seed2_summary.json"
    summary = json.loads(path.read_text())
    summary.update(best_val_accuracy=None, best_epoch=0, stop_reason="nan_loss")
    path.write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    assert "seed2_summary.json diverged" in capsys.readouterr().err
    row = _csv_rows(tmp_path / "report")[("MNIST", "dense", "BrainProp")]
    assert (row["n_seeds"], row["seeds"]) == ("1", "1")
    assert "Left out: MNIST_dense_BrainProp_seed2" in (tmp_path / "report" / "tables.md").read_text()


def test_report_into_a_folder_that_cannot_be_written_is_refused_in_one_line(tmp_path, capsys):
    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 2, 0.9, 3)
    (tmp_path / "a-file").write_text("")
    assert main([str(tmp_path), "--out", str(tmp_path / "a-file" / "report")]) == 2
    assert "--out" in _one_error(capsys)
    with read_only_folder(tmp_path / "locked") as locked:
        assert main([str(tmp_path), "--out", str(locked)]) == 2
    assert "--out" in _one_error(capsys)


def _figure_of(monkeypatch, plot, *args):
    """The matplotlib figure `plot` would save, kept open to look at."""
    import brainprop.tables.report as report_module

    figures = []
    monkeypatch.setattr(report_module, "_save_figure",
                        lambda fig, out_dir, name: figures.append(fig) or [])
    plot(*args)
    fig = figures[0]
    fig.canvas.draw()
    return fig


def _legend_clear_of_curves(fig, ax):
    legend = ax.get_legend() or fig.legends[0]
    return not legend.get_window_extent().overlaps(ax.get_window_extent())


def test_figures_of_one_epoch_runs_show_points_on_a_whole_epoch_axis(tmp_path, monkeypatch):
    from brainprop.tables.report import load_runs, plot_class_discovery, plot_figure5

    write_run(tmp_path, "MNIST", "dense", "BrainProp", 1, 1, 0.11, 1)
    write_run(tmp_path, "MNIST", "dense", "EBP", 1, 1, 0.3, 1)
    write_run(tmp_path, "MNIST", "dense", "EBP", 2, 1, 0.4, 1)
    runs = load_runs(tmp_path)
    fig = _figure_of(monkeypatch, plot_figure5, runs, tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BrainProp (1 seed)",
                                                                  "EBP (2 seeds)"]
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
    assert ax.get_xlim() == (0.5, 1.5)
    assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1]  # no epoch 0.8
    assert _legend_clear_of_curves(fig, ax)

    brainprop = next(run for run in runs if run.config[2] == "BrainProp")
    fig = _figure_of(monkeypatch, plot_class_discovery, brainprop, tmp_path)
    ax = fig.axes[0]
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
    assert ax.get_xlim() == (0.5, 1.5) and _legend_clear_of_curves(fig, ax)


def test_run_plot_has_markers_and_a_legend_off_the_curves(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from brainprop.runs import outputs

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    history = {"accuracy": [0.1], "val_accuracy": [0.2]}
    outputs.plot_accuracy(history, "MNIST dense EBP", "training", tmp_path / "a.pdf",
                          tmp_path / "a.png")
    fig = figures[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert all(line.get_marker() not in (None, "None", "") for line in ax.get_lines())
    assert ax.get_xlim() == (0.5, 1.5) and _legend_clear_of_curves(fig, ax)


def test_class_discovery_figure_draws_each_class_of_a_fit_history():
    from brainprop.tables.report import class_discovery_figure

    class History:  # what keras.Model.fit returns, as far as the figure reads it
        history = {"accuracy": [0.2, 0.5], "class_accuracy": [np.array([0.0, 0.4, 0.2]),
                                                              np.array([0.9, 0.1, 0.5])]}

    fig = class_discovery_figure(History())
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["class 0", "class 1", "class 2", "all classes"]
    np.testing.assert_array_equal(lines[1].get_ydata(), [0.4, 0.1])
    np.testing.assert_array_equal(lines[3].get_ydata(), [0.2, 0.5])
    assert fig.axes[0].get_ylabel() == "training accuracy"

    with_validation = {**History.history, "val_accuracy": [0.3, 0.6],
                       "val_class_accuracy": [[0.1, 0.2, 0.3], [0.7, 0.8, 0.9]]}
    fig = class_discovery_figure(with_validation, title="mine")
    lines = fig.axes[0].get_lines()
    np.testing.assert_array_equal(lines[2].get_ydata(), [0.3, 0.9])
    assert fig.axes[0].get_title() == "mine" and fig.axes[0].get_ylabel() == "validation accuracy"


def test_class_discovery_figure_of_a_history_without_class_accuracy_says_what_to_compile():
    from brainprop.tables.report import class_discovery_figure

    with pytest.raises(BrainPropError, match=r"metrics=\[brainprop.nets.metrics.ClassAccuracy"):
        class_discovery_figure({"accuracy": [0.1], "loss": [1.0]})


def test_class_discovery_names_the_classes_a_summary_names():
    from brainprop.tables.report import class_discovery_figure

    history = {"val_class_accuracy": [[0.1, 0.5, 0.9], [0.2, 0.6, 1.0]], "val_accuracy": [0.5, 0.6]}
    named = class_discovery_figure(history, classes=["ant", "moth", "zebra"])
    assert named.axes[0].get_legend_handles_labels()[1] == [
        "0: ant", "1: moth", "2: zebra", "all classes"]
    numbered = class_discovery_figure(history)
    assert numbered.axes[0].get_legend_handles_labels()[1][:3] == ["class 0", "class 1", "class 2"]


# --- the feedback comparison --------------------------------------------------------------


def angles(epochs, start, layers=("conv2d", "dense"), weight=True):
    """`weight_angle/<layer>` and `update_angle/<layer>` as a run with feedback records
    them: one value per epoch, in degrees."""
    kinds = ("weight_angle", "update_angle") if weight else ("update_angle",)
    return {f"{kind}/{layer}": [start - 2.0 * e - i for e in range(epochs)]
            for kind in kinds for i, layer in enumerate(layers)}


# (rule, kind): [(seed, best epoch, accuracy, epochs run)], all on MNIST conv.
COMPARED = {
    ("BrainProp", "symmetric"): [(1, 10, 0.99, 12), (2, 12, 0.98, 14)],
    ("BrainProp", "random"): [(1, 20, 0.95, 22), (2, 22, 0.96, 24), (3, 30, 0.97, 32)],
    ("BrainProp", "kolen-pollack"): [(1, 11, 0.985, 13), (2, 13, 0.975, 15)],
    ("EBP", "symmetric"): [(1, 5, 0.992, 7)],
    ("EBP", "direct"): [(1, 9, 0.93, 11), (2, 8, 0.94, 10)],
}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    runs = tmp_path_factory.mktemp("compared")
    for (rule, kind), seeds in COMPARED.items():
        for seed, best, accuracy, ran in seeds:
            more = {} if kind == "symmetric" else angles(ran, 80.0 + seed, weight=kind != "direct")
            # A symmetric run written before feedback existed records none.
            write_run(runs, "MNIST", "conv", rule, seed, best, accuracy, ran,
                      feedback=None if (rule, kind, seed) == ("EBP", "symmetric", 1) else kind,
                      more_history=more)
    # Another network without feedback: in Table 1, not in the comparison.
    write_run(runs, "MNIST", "dense", "BrainProp", 1, 10, 0.97, 12)
    written = write_report(runs)
    return runs, written


def _feedback_csv(out):
    rows = list(csv.DictReader(io.StringIO((out / "feedback.csv").read_text())))
    return {(r["dataset"], r["architecture"], r["algorithm"], r["feedback"]): r for r in rows}


def _expected(rule, kind):
    """Mean and sample std over the seeds written: accuracy % and best epoch."""
    seeds = COMPARED[(rule, kind)]
    accuracy = np.array([100 * float(a) for _, _, a, _ in seeds])
    epochs = np.array([float(b) for _, b, _, _ in seeds])
    spread = (lambda x: float(np.std(x, ddof=1))) if len(seeds) > 1 else (lambda x: None)
    return (float(np.mean(accuracy)), spread(accuracy), float(np.mean(epochs)), spread(epochs),
            [seed for seed, *_ in seeds])


def test_each_run_of_another_kind_of_feedback_is_a_run_of_its_own(compared):
    runs = load_runs(compared[0])
    assert len(runs) == sum(map(len, COMPARED.values())) + 1
    assert {run.feedback for run in runs if run.config[:2] == ("MNIST", "dense")} == {"symmetric"}
    seed_1 = {run.feedback for run in runs if run.config == ("MNIST", "conv", "BrainProp")
              and run.summary["seed"] == 1}
    assert seed_1 == {"symmetric", "random", "kolen-pollack"}


def test_feedback_table_cells_are_mean_and_std_over_the_seeds(compared):
    rows = _feedback_csv(compared[0] / "report")
    assert sorted(rows) == sorted(("MNIST", "conv", rule, kind) for rule, kind in COMPARED)
    for (rule, kind) in COMPARED:
        row = rows[("MNIST", "conv", rule, kind)]
        accuracy, accuracy_std, epochs, epochs_std, seeds = _expected(rule, kind)
        assert float(row["accuracy_mean"]) == accuracy and float(row["best_epoch_mean"]) == epochs
        assert (float(row["accuracy_std"]) if row["accuracy_std"] else None) == accuracy_std
        assert (float(row["best_epoch_std"]) if row["best_epoch_std"] else None) == epochs_std
        assert (row["n_seeds"], row["seeds"]) == (str(len(seeds)), " ".join(map(str, seeds)))
    assert float(rows[("MNIST", "conv", "BrainProp", "random")]["epochs_run_mean"]) == 26


def _cell(rule, kind):
    accuracy, accuracy_std, epochs, epochs_std, seeds = _expected(rule, kind)
    if accuracy_std is None:
        return f"{accuracy:.2f} / {epochs:.1f} [{len(seeds)}]"
    return f"{accuracy:.2f}({accuracy_std:.2f}) / {epochs:.1f}({epochs_std:.1f}) [{len(seeds)}]"


def test_feedback_table_has_a_column_per_kind_and_a_row_per_rule(compared):
    markdown = (compared[0] / "report" / "tables.md").read_text()
    section = markdown[markdown.index("## Feedback"):]
    assert "| dataset | architecture | rule | symmetric | random | kolen-pollack | direct |" in section
    assert (f"| MNIST | conv | BrainProp | {_cell('BrainProp', 'symmetric')} | "
            f"{_cell('BrainProp', 'random')} | {_cell('BrainProp', 'kolen-pollack')} |  |"
            in section)
    assert f"| MNIST | conv | EBP | {_cell('EBP', 'symmetric')} |  |  | {_cell('EBP', 'direct')} |" in section
    assert "| MNIST | dense |" not in section
    assert markdown.index("## Table 1") < markdown.index("## Feedback")


def test_feedback_table_gives_the_seeds_once_when_every_cell_has_as_many(tmp_path):
    for seed, accuracy in [(1, 0.9), (2, 0.8)]:
        for kind in ("symmetric", "sign"):
            write_run(tmp_path, "FashionMNIST", "dense", "EBP", seed, 3, accuracy, 5, feedback=kind)
    write_report(tmp_path)
    section = (tmp_path / "report" / "tables.md").read_text().split("## Feedback")[1]
    assert "mean(std) over 2 seeds" in section and "[2]" not in section
    spread = np.std([90.0, 80.0], ddof=1)
    cell = f"85.00({spread:.2f}) / 3.0(0.0)"
    assert f"| FashionMNIST | dense | EBP | {cell} | {cell} |" in section


def test_the_papers_tables_and_figure_5_count_only_symmetric_runs(compared, monkeypatch):
    from brainprop.tables.report import plot_figure5

    rows = _csv_rows(compared[0] / "report")
    brainprop = rows[("MNIST", "conv", "BrainProp")]
    accuracy, accuracy_std, epochs, _, seeds = _expected("BrainProp", "symmetric")
    assert (brainprop["table"], brainprop["seeds"]) == ("table1", "1 2")
    assert float(brainprop["accuracy_mean"]) == accuracy
    assert float(brainprop["best_epoch_mean"]) == epochs
    assert rows[("MNIST", "conv", "EBP")]["seeds"] == "1"
    fig = _figure_of(monkeypatch, plot_figure5, load_runs(compared[0]), compared[0])
    conv = next(ax for ax in fig.axes if ax.get_title() == "MNIST conv")
    assert [t.get_text() for t in conv.get_legend().get_texts()] == ["BrainProp (2 seeds)",
                                                                    "EBP (1 seed)"]


def test_angles_figure_is_written_from_the_histories_with_angles(compared):
    out, written = compared[0] / "report", compared[1]
    assert {p.name for p in written} >= {"feedback.csv", "feedback_angles.png",
                                         "feedback_angles.pdf"}
    with Image.open(out / "feedback_angles.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] >= 500


def test_angles_figure_shows_the_mean_over_seeds_per_layer(compared, monkeypatch):
    from brainprop.tables.report import plot_feedback_angles

    fig = _figure_of(monkeypatch, plot_feedback_angles, load_runs(compared[0]), compared[0])
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6 and titles[2].startswith("MNIST conv BrainProp kolen-pollack (2 seeds)")
    random_weights = fig.axes[0]
    assert random_weights.get_title().startswith("MNIST conv BrainProp random (3 seeds)\nweights")
    lines = {line.get_label(): line.get_ydata() for line in random_weights.get_lines()}
    # Seeds 1-3 start at 81, 82, 83 degrees; runs of 22, 24 and 32 epochs.
    np.testing.assert_allclose(lines["conv2d"][:2], [82.0, 80.0])
    np.testing.assert_allclose(lines["dense"][-1], 83.0 - 2.0 * 31 - 1)
    direct_weights, direct_updates = fig.axes[4], fig.axes[5]
    assert not direct_weights.get_lines() and len(direct_updates.get_lines()) == 2


def test_no_angles_figure_without_angles_and_no_comparison_without_feedback(report, tmp_path):
    names = {p.name for p in report[1]}
    assert not names & {"feedback.csv", "feedback_angles.png", "feedback_angles.pdf"}
    assert "## Feedback" not in (report[0] / "tables.md").read_text()
    write_run(tmp_path, "MNIST", "dense", "EBP", 1, 3, 0.9, 5, feedback="random")
    written = {p.name for p in write_report(tmp_path)}
    assert "feedback.csv" in written and not any("angles" in name for name in written)
    assert not (tmp_path / "report" / "feedback_angles.png").exists()


def test_history_with_angles_outside_0_to_180_degrees_is_refused_in_one_line(tmp_path, capsys):
    write_run(tmp_path, "MNIST", "dense", "EBP", 1, 2, 0.9, 2, feedback="random",
              more_history={"weight_angle/dense": [45.0, 181.0]})
    assert main([str(tmp_path)]) == 2
    line = _one_error(capsys)
    assert "weight_angle/dense" in line and "angles outside 0 to 180 degrees" in line
