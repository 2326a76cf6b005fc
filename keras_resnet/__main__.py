"""``python -m keras_resnet``: the ``keras-resnet`` command, for when its script is not on PATH."""

import sys

from keras_resnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
