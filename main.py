"""Train or evaluate BrainProp / EBP networks: `python main.py --help`."""

import sys

from brainprop.runs.cli import main

if __name__ == "__main__":
    sys.exit(main())
