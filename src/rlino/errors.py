"""One exception type for every mistake a user can make: the CLI prints its message, never a traceback."""


class RlinoError(Exception):
    """Bad input (config, data, model path, arguments) or a run that must stop, with a message naming what and where."""
