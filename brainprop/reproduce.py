"""`python -m brainprop.reproduce`: run a whole table of the paper over seeds
(`brainprop.tables.reproduce`)."""

import sys

from brainprop.tables.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
