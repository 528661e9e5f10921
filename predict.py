"""Segment images with a trained model: ``python predict.py --weights best.keras`` (see --help)."""

import sys

from unet_tf.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
