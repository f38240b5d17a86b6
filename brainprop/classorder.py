"""`python -m brainprop.classorder`: the class order a Tiny ImageNet weight file was trained
with (`brainprop.runs.classorder`)."""

import sys

from brainprop.runs.classorder import main

if __name__ == "__main__":
    sys.exit(main())
