"""How the app refuses a request: a package error becomes the message the user reads.

The package raises :class:`~grounded_sam.errors.GroundedSamError` for every problem a user can fix
(no image, bad options, unreadable upload, weights not available); every event handler is wrapped
in :func:`user_errors`, which shows that message in the page (or returns it to an API client) as
a ``gr.Error``, logged once and without a traceback.

Anything else is a bug (or the machine running out of memory): the user reads a short message with an
error id, never Gradio's bare "Error", and the server log holds the same id with the traceback, so a
user's report can be matched to its cause. The next request is served as usual.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from grounded_sam.errors import GroundedSamError

__all__ = ["EDIT_ERROR_S", "ERROR_S", "new_error_id", "unexpected_error", "user_errors"]

logger = logging.getLogger(__name__)

#: Seconds a refusal stays on screen: by default long enough to read a message that lists where
#: weights were looked for; shorter for an edit (a click on nothing to edit yet).
ERROR_S, EDIT_ERROR_S = 30, 8

F = TypeVar("F", bound=Callable[..., Any])


def new_error_id() -> str:
    """A short random id (8 hex digits) that names one failure in the page and in the log."""
    return secrets.token_hex(4)


def _out_of_memory(exc: BaseException) -> bool:
    # torch.OutOfMemoryError subclasses RuntimeError; matched by name so this module needs no torch.
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def unexpected_error(exc: Exception, handler: str, duration: float = ERROR_S) -> gr.Error:
    """Logs an exception the package did not expect, with its traceback and a new error id, and returns what the user reads.

    Args:
        exc: The exception (must be the one being handled, so the traceback is logged).
        handler: The event handler's name, for the log.
        duration: Seconds the message stays on screen.

    Returns:
        A ``gr.Error`` naming the error id (and, for out-of-memory, what to try), without the exception's text:
        that may hold server paths or internals.
    """
    error_id = new_error_id()
    logger.error("Unexpected error %s in %s: %s: %s", error_id, handler, type(exc).__name__, exc, exc_info=exc)
    if _out_of_memory(exc):
        message = (f"The server ran out of memory on this request (error id {error_id}). Try a smaller image or "
                   "video, fewer categories or files, or try again when the server is less busy.")
    else:
        message = (f"Something went wrong on the server (error id {error_id}). Try again; if it happens again, "
                   "tell the server's operator this error id.")
    return gr.Error(message, duration=duration, print_exception=False)


def user_errors(duration: float = ERROR_S) -> Callable[[F], F]:
    """Wraps an event handler (a function or a generator) so every failure reaches the user as a ``gr.Error``.

    A ``GroundedSamError`` shows its own message; any other exception shows :func:`unexpected_error`'s message
    with an error id (also logged, with the traceback); a ``gr.Error`` the handler raised passes through.

    The wrapper keeps the handler's name and signature, which Gradio reads: the name is the
    event's API name, and parameters annotated ``gr.Request``, ``gr.SelectData`` or defaulting to
    ``gr.Progress()`` are filled by Gradio.
    """

    def refuse(exc: GroundedSamError) -> gr.Error:
        logger.info("Request refused: %s", exc)
        return gr.Error(str(exc), duration=duration, print_exception=False)

    def wrap(handler: F) -> F:
        if inspect.isgeneratorfunction(handler):  # Gradio streams only what is itself a generator function

            @functools.wraps(handler)
            def stream(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from handler(*args, **kwargs)
                except gr.Error:
                    raise
                except GroundedSamError as exc:
                    raise refuse(exc) from exc
                except Exception as exc:
                    raise unexpected_error(exc, handler.__name__, duration) from exc

            return stream  # type: ignore[return-value]

        @functools.wraps(handler)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except gr.Error:
                raise
            except GroundedSamError as exc:
                raise refuse(exc) from exc
            except Exception as exc:
                raise unexpected_error(exc, handler.__name__, duration) from exc

        return call  # type: ignore[return-value]

    return wrap
