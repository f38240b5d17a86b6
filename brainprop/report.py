"""`python -m brainprop.report`: the paper's tables and figures from a folder of runs
(`brainprop.tables.report`)."""

import sys

from brainprop.tables.report import main

if __name__ == "__main__":
    sys.exit(main())
