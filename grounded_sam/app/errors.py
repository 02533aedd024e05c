"""How the app refuses a request: a package error becomes the message the user reads.

The package raises :class:`~grounded_sam.errors.GroundedSamError` for every problem a user can fix
(no image, bad options, unreadable upload, weights not available); every event handler is wrapped
in :func:`user_errors`, which shows that message in the page (or returns it to an API client) as
a ``gr.Error``, logged once and without a traceback. Anything else is a bug and stays one.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from grounded_sam.errors import GroundedSamError

__all__ = ["EDIT_ERROR_S", "ERROR_S", "user_errors"]

logger = logging.getLogger(__name__)

#: Seconds a refusal stays on screen: by default long enough to read a message that lists where
#: weights were looked for; shorter for an edit (a click on nothing to edit yet).
ERROR_S, EDIT_ERROR_S = 30, 8

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(duration: float = ERROR_S) -> Callable[[F], F]:
    """Wraps an event handler (a function or a generator) so a ``GroundedSamError`` reaches the user as ``gr.Error``.

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
                except GroundedSamError as exc:
                    raise refuse(exc) from exc

            return stream  # type: ignore[return-value]

        @functools.wraps(handler)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            except GroundedSamError as exc:
                raise refuse(exc) from exc

        return call  # type: ignore[return-value]

    return wrap
