"""``python -m unet_tf.export``: the same as ``unet-tf-export``."""

import sys

from unet_tf.cli.export import main

sys.exit(main())
