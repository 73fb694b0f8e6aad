"""The one exception type for bad user input: its message is a single line meant for the user."""


class InputError(ValueError):
    """Bad input (file, size, parameter); ``str(err)`` is a one-line explanation for the user."""


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters: a huge number or a long text never fills an error."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int past Python's digit limit
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
