"""The command lines: argument parsing for train, predict, export, the app and the demo data.

Each parses its flags into the library's settings and calls the same functions a notebook calls;
``common.py`` turns the library's parameter names into flags (:data:`~unet_tf.cli.common.PARAMETER_FLAGS`).
"""
