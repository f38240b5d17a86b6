"""Extract the official tiny-imagenet-200.zip: `python tinyimagenet.py [ZIP]`."""

import sys

from brainprop.data.extract import main

if __name__ == "__main__":
    sys.exit(main())
