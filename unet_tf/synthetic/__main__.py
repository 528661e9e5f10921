"""``python -m unet_tf.synthetic --out DIR``: see :mod:`unet_tf.cli.synthetic`."""

from unet_tf.cli.synthetic import main

raise SystemExit(main())
