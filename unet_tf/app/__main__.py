"""``python -m unet_tf.app [--port N] [--runs DIR]``: the same as ``unet-tf-app``."""

import sys

from unet_tf.cli.app import main

sys.exit(main())
