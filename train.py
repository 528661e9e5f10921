"""Train a segmentation network: ``python train.py --dataset tem`` (see --help)."""

import sys

from unet_tf.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
