"""Every error an event meets reaches the visitor as one line of ours (``guarded``; INTERNAL for the unforeseen)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterator

import gradio as gr

from dip_core import InputError

from .form import RunForm
from .inputs import RunRequest, parse_form

logger = logging.getLogger(__name__)

INTERNAL = "something went wrong on the server ({kind}); it was logged: try again, or with other settings"


def guarded(fn: Callable) -> Callable:
    """``fn`` (an event function: plain, generator, coroutine or async generator) whose errors all reach the visitor as
    one line of ours: a ``gr.Error`` as it is, an ``InputError`` as its line, anything else logged here and answered
    with INTERNAL."""

    @contextlib.contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - anything else: logged, one line of ours
            logger.exception("event %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(INTERNAL.format(kind=type(err).__name__), print_exception=False) from None

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_generator(*args, **kwargs):  # noqa: ANN202 - the event function's own outputs
            with translated():
                async for item in fn(*args, **kwargs):
                    yield item

        return async_generator
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args, **kwargs):  # noqa: ANN202
            with translated():
                return await fn(*args, **kwargs)

        return coroutine
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):  # noqa: ANN202
            with translated():
                yield from fn(*args, **kwargs)

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):  # noqa: ANN202
        with translated():
            return fn(*args, **kwargs)

    return plain


def checked_request(form: RunForm) -> RunRequest:
    """``parse_form``, with bad input as a one-line ``gr.Error``."""
    try:
        return parse_form(form)
    except InputError as err:
        raise gr.Error(str(err), print_exception=False) from None
