"""The one exception type for bad user input.

Anything a user can fix by editing a file or a flag raises :class:`InputError`; the CLI prints
its message on one line and exits with status 2, without a traceback.
"""


class InputError(ValueError):
    """Bad input: a config, space, data file or model that cannot be used as given."""
