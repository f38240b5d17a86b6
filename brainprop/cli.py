"""The command line of the original release, kept exactly, plus a few options.

    python main.py <dataset> <architecture> <algorithm> [-s] [-l WEIGHTS]

The options are the fields of `brainprop.config.RunConfig`; this module only
parses them into one `RunConfig` per seed and hands those to `brainprop.run`.
Mistakes a user can make end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from brainprop.architectures import combinations_text
from brainprop.config import LOAD_ALONE, RunConfig, parse_seeds
from brainprop.errors import BrainPropError, Parser, run_command

PROG = "main.py"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Train or evaluate a network with BrainProp or error backpropagation "
        f"(Pozzi, Bohte & Roelfsema, NeurIPS 2020). Combinations: {combinations_text()}.",
    )
    seeds = parser.add_mutually_exclusive_group()
    RunConfig.add_arguments(parser, seed_group=seeds)
    seeds.add_argument("--seeds", type=parse_seeds,
                       help="train once per seed, one after another, each with its own "
                       "outputs: 1-10, 1,3,5 or 7")
    return parser


def configs_from(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per seed named on the command line."""
    if args.seeds and args.load:
        raise BrainPropError(LOAD_ALONE)
    return [RunConfig.from_namespace(args, seed=seed) for seed in args.seeds or [args.seed]]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)  # a bad argument exits here, in one line

    def start() -> int:
        from brainprop.run import run_all

        return run_all(configs_from(args), command=shlex.join(["python", PROG, *argv]))

    return run_command(PROG, start)


if __name__ == "__main__":
    sys.exit(main())
