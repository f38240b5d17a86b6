"""One RunConfig describes a run: parser, resume command, summary and child runs agree."""

import argparse
import dataclasses
import itertools
import shlex

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brainprop.data.datasets import build_dataset, paper_combinations
from brainprop.model.feedback import FEEDBACK
from brainprop.model.rules import RULES
from brainprop.nets.architectures import ARCHITECTURES
from brainprop.nets.build import build_model
from brainprop.runs.cli import build_parser, configs_from
from brainprop.runs.execution import Run, summary
from brainprop.runs.plan import plan_run
from brainprop.runs.runconfig import RunConfig, check_combination, help_of, option, positive
from brainprop.tables import reproduce
from brainprop.train.training import TrainingResult
from brainprop.utils.errors import BrainPropError
from brainprop.utils.placement import Placement

pytestmark = pytest.mark.backend_independent

FIELDS = dataclasses.fields(RunConfig)


def parse(argv: list[str]) -> list[RunConfig]:
    return configs_from(build_parser().parse_args(argv))


def a_value(field: dataclasses.Field):
    """A value of `field` other than its default that its option accepts."""
    meta = field.metadata["argparse"]
    if meta.get("action") == "store_true":
        return True
    if "choices" in meta:
        return next(choice for choice in meta["choices"] if choice != field.default)
    parse_text = meta.get("type", str)
    for text in ("3", "0.25", "some dir/with space"):
        try:
            value = parse_text(text)
        except (argparse.ArgumentTypeError, ValueError):
            continue
        if value != field.default:
            return value
    raise AssertionError(f"no test value for {field.name}")


def test_parser_defaults_are_the_field_defaults():
    parser = build_parser()
    for field in FIELDS:
        if field.name == "seed":
            # None, so that argparse sees any --seed beside --seeds; resolved to the
            # field's default below.
            assert parser.get_default("seed") is None
        elif field.metadata["flags"]:
            assert parser.get_default(field.name) == field.default, field.name
    assert parse(["MNIST", "dense", "EBP"]) == [RunConfig("MNIST", "dense", "EBP")]


def test_every_field_is_a_flag_of_main_py_with_its_help():
    parser = build_parser()
    for field in FIELDS:
        [action] = [a for a in parser._actions if a.dest == field.name]
        assert action.help.startswith(help_of(field))
        assert list(action.option_strings) == list(field.metadata["flags"])


combination = st.sampled_from(
    [(d, a) for d, archs in paper_combinations().items() for a in archs]
)
text = st.text("abcxyz _-./'\"$", min_size=1, max_size=12).filter(lambda t: t.strip("-") == t)


@st.composite
def configs(draw):
    dataset, architecture = draw(combination)
    resume = draw(st.booleans())
    load = None if resume else draw(st.none() | text)
    return RunConfig(
        dataset, architecture, draw(st.sampled_from(list(RULES))),
        save=draw(st.booleans()), load=load,
        epochs=draw(st.integers(1, 10_000)), patience=draw(st.integers(1, 500)),
        seed=draw(st.integers(0, 2**32 - 1)),
        batch_size=draw(st.none() | st.integers(1, 4096)),
        learning_rate=draw(st.none() | st.floats(1e-9, 1e3)),
        output_dir=draw(text), data_dir=draw(st.none() | text),
        validation_split=None if load else draw(st.none() | st.floats(1e-6, 1 - 1e-6)),
        resume=resume,
        init_std=draw(st.none() | st.floats(1e-6, 10)),
        class_order=draw(st.none() | st.sampled_from(["sorted", "listdir"]) | text),
        distribute=draw(st.booleans()),
        mixed_precision=draw(st.sampled_from([None, "float16", "bfloat16"])),
        image_size=draw(st.none() | st.sampled_from(["32x32", "1x4096", "24x16"])),
    )


@settings(max_examples=200, deadline=None)
@given(config=configs())
def test_the_command_of_a_config_parses_back_to_it(config):
    words = shlex.split(config.command())
    assert words[:2] == ["python", "main.py"]
    assert parse(words[2:]) == [config]


def test_summary_hyperparameters_and_resume_command_come_from_the_config():
    config = RunConfig("MNIST", "loccon", "BrainProp", save=True, epochs=7, patience=3,
                       learning_rate=0.05, data_dir="my data", seed=4)
    x = np.zeros((4, 28, 28, 1), np.uint8)
    data = build_dataset("MNIST", (x, np.arange(4) % 2, x[:2], np.arange(2)), n_classes=10,
                         source="test")
    model = build_model(ARCHITECTURES["loccon"], RULES["BrainProp"], data.input_shape, 10)
    result = TrainingResult({}, [1.0], 1, 0.5, "max_epochs")
    run = Run(plan_run(config), data, data, Placement(("cpu:0",)))
    recorded = summary(run, model, result)

    hyper = recorded["hyperparameters"]
    assert hyper["batch_size"] == ARCHITECTURES["loccon"].batch_size  # not given: resolved
    assert (hyper["learning_rate"], hyper["max_epochs"], hyper["patience"]) == (0.05, 7, 3)
    assert (recorded["dataset"], recorded["seed"], recorded["resumed"]) == ("MNIST", 4, False)
    assert recorded["hyperparameters"] == plan_run(config).hyperparameters.as_dict()
    assert RunConfig(**recorded["config"]) == config
    resume = dataclasses.replace(config, resume=True)
    assert parse(shlex.split(resume.command())[2:]) == [resume]


def test_reproduce_passes_every_option_of_main_py_on_to_its_runs(tmp_path):
    forwarded = [f for f in FIELDS if f.metadata["flags"] and f.metadata["forward"]]
    assert {f.name for f in forwarded} >= {"epochs", "patience", "data_dir", "validation_split"}
    # --image-size is for image folders, which the paper's tables have none of (below).
    values = {f.name: a_value(f) for f in forwarded if f.name != "image_size"}
    values["feedback"] = "kolen-pollack"  # the kind whose decay --feedback-decay is
    given_to_main = RunConfig("MNIST", "dense", "EBP", **values)
    options = given_to_main.argv()[3:]
    args = reproduce.build_parser().parse_args(["table1", "--runs-dir", str(tmp_path), *options])
    child = reproduce.child_config(args, ("MNIST", "dense", "EBP"), 5, tmp_path)
    assert child == dataclasses.replace(given_to_main, save=True, seed=5,
                                        output_dir=str(tmp_path))
    args = reproduce.build_parser().parse_args(["table1", "--runs-dir", str(tmp_path),
                                                "--image-size", "24"])
    assert RunConfig.forwarded(args)["image_size"] == "24x24"
    with pytest.raises(BrainPropError, match="MNIST is not one: drop --image-size"):
        reproduce.child_config(args, ("MNIST", "dense", "EBP"), 5, tmp_path)


def test_a_new_field_is_all_it_takes_to_forward_a_new_option():
    @dataclasses.dataclass(frozen=True)
    class WithMomentum(RunConfig):
        momentum: float = option("--momentum", default=0.0, type=positive(float),
                                 help="SGD momentum")

    parser = argparse.ArgumentParser()
    WithMomentum.add_arguments(parser)
    config = WithMomentum("MNIST", "dense", "EBP", momentum=0.9, epochs=3)
    assert config.argv() == ["MNIST", "dense", "EBP", "--epochs", "3", "--momentum", "0.9"]
    assert WithMomentum.from_namespace(parser.parse_args(config.argv())) == config
    passed_on = argparse.ArgumentParser()
    WithMomentum.add_arguments(passed_on, forwarded_only=True)
    assert WithMomentum.forwarded(passed_on.parse_args(["--momentum", "0.9"]))["momentum"] == 0.9
    assert config.as_dict()["momentum"] == 0.9


@pytest.mark.parametrize("field", [f for f in FIELDS if not f.metadata["forward"]],
                         ids=lambda f: f.name)
def test_reproduce_decides_which_run_and_where_itself(field):
    flags = field.metadata["flags"]
    if flags:
        assert not any(f in reproduce.build_parser()._option_string_actions for f in flags)


def test_reproduce_resumes_a_run_left_unfinished_in_the_runs_folder(tmp_path):
    args = reproduce.build_parser().parse_args(["table1", "--runs-dir", str(tmp_path)])
    run = ("MNIST", "dense", "EBP")
    assert not reproduce.child_config(args, run, 5, tmp_path).resume
    (tmp_path / ".MNIST_dense_EBP_seed5.backup").mkdir()  # what an interrupted run leaves
    child = reproduce.child_config(args, run, 5, tmp_path)
    assert child.resume and child.saves
    assert "--resume" in child.argv()


ALL = itertools.product(list(paper_combinations()), ["dense", "loccon", "conv", "deep"], list(RULES))


@pytest.mark.parametrize("dataset,architecture,algorithm", list(ALL))
def test_only_the_papers_combinations_are_allowed(dataset, architecture, algorithm):
    if architecture in paper_combinations()[dataset]:
        check_combination(dataset, architecture)
        plan_run(RunConfig(dataset, architecture, algorithm))
        return
    with pytest.raises(BrainPropError) as error:
        check_combination(dataset, architecture)
    message = str(error.value)
    assert "\n" not in message and "MNIST: dense, loccon, conv" in message


def test_a_run_with_feedback_names_its_kind_before_the_seed():
    paper = RunConfig("MNIST", "conv", "BrainProp", seed=3)
    assert plan_run(paper).name == "MNIST_conv_BrainProp_seed3"
    assert plan_run(dataclasses.replace(paper, feedback="symmetric")).name == "MNIST_conv_BrainProp_seed3"
    others = [kind for kind in FEEDBACK if kind != "symmetric"]
    assert others == ["random", "sign", "kolen-pollack", "direct"]
    for kind in others:
        plan = plan_run(dataclasses.replace(paper, feedback=kind, save=True))
        assert plan.name == f"MNIST_conv_BrainProp_{kind}_seed3"
        assert f"--feedback {kind}" in plan.resume_command()


def test_the_hyperparameters_are_resolved_once_from_the_options_architecture_and_rule():
    given = RunConfig("MNIST", "dense", "EBP", batch_size=64, init_std=0.1)
    hyper = plan_run(given).hyperparameters
    assert (hyper.training.batch_size, hyper.init_std, hyper.epsilon) == (64, 0.1, None)
    assert hyper.training.learning_rate == ARCHITECTURES["dense"].learning_rate
    default = plan_run(RunConfig("CIFAR10", "loccon", "BrainProp")).hyperparameters
    assert (default.training.batch_size, default.init_std) == (32, 0.005)
    assert default.epsilon == RULES["BrainProp"].epsilon
    assert "batch 32, learning rate 0.1, init std 0.005" in default.line()
    assert default.line().endswith("epsilon 0.02")


def test_the_settings_a_resume_compares_are_named_by_their_options():
    settings = plan_run(RunConfig("MNIST", "dense", "EBP", init_std=0.1)).hyperparameters.settings()
    assert set(settings) <= {field.name for field in FIELDS}
    assert settings["init_std"] == 0.1
    assert [RunConfig.flag_of(name) for name in ("init_std", "batch_size")] == [
        "--init-std", "--batch-size"]


def test_kolen_pollacks_decay_is_an_option_recorded_where_the_run_is_described():
    from brainprop.model.feedback import KOLEN_POLLACK_DECAY

    default, = parse(["MNIST", "conv", "BrainProp", "--feedback", "kolen-pollack"])
    given, = parse(["MNIST", "conv", "BrainProp", "--feedback", "kolen-pollack",
                    "--feedback-decay", "0.01"])
    for config, decay in ((default, KOLEN_POLLACK_DECAY), (given, 0.01)):
        plan = plan_run(config)
        assert plan.rule.feedback.name == "kolen-pollack" and plan.rule.feedback.decay == decay
        hyper = plan.hyperparameters
        assert hyper.as_dict()["feedback_decay"] == hyper.settings()["feedback_decay"] == decay
        assert f"feedback kolen-pollack (decay {decay:g})" in hyper.line()
        model = build_model(plan.architecture, plan.rule, (8, 8, 1), 4)
        paths = [layer for layer in model.layers if getattr(layer, "feeds_back", False)]
        assert len(paths) == 4 and all(path.kind.decay == decay for path in paths)
    assert RunConfig.flag_of("feedback_decay") == "--feedback-decay"
    assert "--feedback-decay 0.01" in plan_run(dataclasses.replace(given, save=True)).resume_command()
    # The kinds that do not decay record nothing of it: the paper's summaries keep their keys.
    for kind in ("symmetric", "random"):
        hyper = plan_run(RunConfig("MNIST", "conv", "EBP", feedback=kind)).hyperparameters
        assert "feedback_decay" not in hyper.as_dict() and "feedback_decay" not in hyper.settings()


@pytest.mark.parametrize("argv, message", [
    (["--feedback-decay", "0.01"], "--feedback-decay is the decay of kolen-pollack feedback, not "
     "of symmetric: add --feedback kolen-pollack, or drop --feedback-decay"),
    (["--feedback", "random", "--feedback-decay", "0"], "not of random"),
])
def test_a_decay_without_kolen_pollack_is_refused_in_one_line(argv, message):
    with pytest.raises(BrainPropError) as error:
        plan_run(parse(["MNIST", "conv", "BrainProp", *argv])[0])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["-0.1", "inf", "nan", "much"])
def test_a_decay_that_is_not_a_finite_number_from_0_is_refused(text, capsys):
    with pytest.raises(SystemExit):
        parse(["MNIST", "conv", "BrainProp", "--feedback", "kolen-pollack",
               "--feedback-decay", text])
    assert "--feedback-decay" in capsys.readouterr().err
