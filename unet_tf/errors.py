"""The one exception type for user mistakes (bad files, flags, values)."""


class UserInputError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    The message names the file or flag and what is wrong with it; the command
    line entry points print it as ``error: <message>`` and exit with status 2.
    """
