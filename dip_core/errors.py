"""The one exception type for bad user input: its message is a single line meant for the user."""


class InputError(ValueError):
    """Bad input (file, size, parameter); ``str(err)`` is a one-line explanation for the user."""
