"""The command line of the original release, kept exactly, plus a few options.

    python main.py <dataset> <architecture> <algorithm> [-s] [-l WEIGHTS]

The options are the fields of `brainprop.runs.runconfig.RunConfig`; this module only
parses them into one `RunConfig` per seed and hands those to `brainprop.runs.run`
(no Keras: a bad command line is refused before a backend starts).
Mistakes a user can make end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from brainprop.runs.run import describe, run_all
from brainprop.runs.runconfig import MAIN_PY, RunConfig, combinations_text, parse_seeds
from brainprop.utils.errors import Parser, run_command
from brainprop.utils.invocation import invoked_as
from brainprop.utils.signals import stop_signals

# How this command can be started: `python main.py`, `brainprop`, `python -m brainprop.runs.cli`.
STARTED_AS = ("main.py", "brainprop", "brainprop.runs.cli")


def build_parser(prog: str = MAIN_PY.name) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Train or evaluate a network with BrainProp or error backpropagation "
        f"(Pozzi, Bohte & Roelfsema, NeurIPS 2020). Combinations: {combinations_text()}.",
    )
    seeds = parser.add_mutually_exclusive_group()
    RunConfig.add_arguments(parser, seed_group=seeds)
    seeds.add_argument("--seeds", type=parse_seeds,
                       help="train once per seed, one after another, each with its own "
                       "outputs: 1-10, 1,3,5 or 7")
    # argparse counts an option as given only when its value differs from the
    # default: with no default, `--seed 1 --seeds 1-2` is refused like any other pair.
    parser.set_defaults(seed=None)
    parser.add_argument("--print-config", action="store_true",
                        help="print every hyperparameter and path the run would use, as "
                        "JSON, and exit without loading data or training")
    return parser


def configs_from(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per seed named on the command line."""
    default_seed = RunConfig.__dataclass_fields__["seed"].default
    seeds = args.seeds or [default_seed if args.seed is None else args.seed]
    return [RunConfig.from_namespace(args, seed=seed) for seed in seeds]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    invoked = invoked_as(STARTED_AS, MAIN_PY)
    args = build_parser(invoked.name).parse_args(argv)  # a bad argument exits here, in one line

    def start() -> int:
        # From here a Ctrl-C is noted, not raised wherever Python happens to be (an
        # import of a backend could swallow it), and acted on at the next safe point.
        with stop_signals():
            if args.print_config:
                print(json.dumps(describe(configs_from(args), invoked), indent=2))
                return 0
            return run_all(configs_from(args), shlex.join(invoked.command(argv)), invoked)

    return run_command(invoked.name, start)


if __name__ == "__main__":
    sys.exit(main())
