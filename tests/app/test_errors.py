"""What a user reads when a handler fails: the package's message, or an error id that is also in the log."""

from __future__ import annotations

import logging
import re

import gradio as gr
import pytest

from grounded_sam.app.errors import user_errors
from grounded_sam.errors import InputError

ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")


def test_an_unexpected_exception_shows_an_error_id_that_the_log_holds_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @user_errors()
    def segment(path: str) -> str:
        raise KeyError(f"internal detail of {path}")

    with caplog.at_level(logging.ERROR, logger="grounded_sam.app.errors"), pytest.raises(gr.Error) as error:
        segment("/srv/secret/model.pt")
    message = str(error.value.message)
    found = ERROR_ID.search(message)
    assert found is not None and "Something went wrong" in message
    assert "/srv/secret" not in message and "KeyError" not in message  # no internals in the page
    [record] = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert "segment" in record.getMessage() and "internal detail" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError


def test_each_failure_gets_its_own_id() -> None:
    @user_errors()
    def fail() -> None:
        raise RuntimeError("boom")

    ids = set()
    for _ in range(5):
        with pytest.raises(gr.Error) as error:
            fail()
        ids.add(ERROR_ID.search(str(error.value.message)).group(1))
    assert len(ids) == 5


def test_a_streaming_handler_gets_the_same_treatment() -> None:
    @user_errors()
    def stream() -> object:
        yield "first update"
        raise ZeroDivisionError("bug")

    updates = stream()
    assert next(updates) == "first update"
    with pytest.raises(gr.Error) as error:
        next(updates)
    assert ERROR_ID.search(str(error.value.message))


def test_running_out_of_memory_says_what_to_try() -> None:
    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, without importing torch
        pass

    @user_errors()
    def huge() -> None:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")

    with pytest.raises(gr.Error) as error:
        huge()
    message = str(error.value.message)
    assert "ran out of memory" in message and ERROR_ID.search(message) and "20 GiB" not in message


def test_user_errors_and_gradio_errors_keep_their_own_message(caplog: pytest.LogCaptureFixture) -> None:
    @user_errors()
    def missing() -> None:
        raise InputError("No image: upload one first.")

    @user_errors()
    def refused() -> None:
        raise gr.Error("Already refused by the handler.")

    with caplog.at_level(logging.INFO), pytest.raises(gr.Error) as error:
        missing()
    assert error.value.message == "No image: upload one first."
    assert not any(r.exc_info for r in caplog.records)  # a user's mistake leaves no traceback in the log
    with pytest.raises(gr.Error) as error:
        refused()
    assert error.value.message == "Already refused by the handler."
