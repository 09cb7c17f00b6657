"""monitoring.repeated_errors: an error in full once, then one line per interval."""

from __future__ import annotations

import errno
import logging

import pytest

from monitoring.repeated_errors import RepeatedErrors, error_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fail(errors: RepeatedErrors, error: Exception) -> None:
    try:
        raise error
    except OSError:
        errors.exception("writing %d records failed", 5)


def test_a_repeating_error_is_logged_in_full_once_then_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read-only store logged a traceback per write attempt: 48,000 lines in 10 minutes."""
    clock = Clock()
    errors = RepeatedErrors(logging.getLogger("test.repeated"), every_s=60, clock=clock)
    read_only = OSError(30, "Read-only file system")
    with caplog.at_level(logging.ERROR, logger="test.repeated"):
        for _ in range(500):
            fail(errors, read_only)
            clock.now += 0.1  # 50 s
        clock.now = 61.0
        fail(errors, read_only)

    first, summary = caplog.records
    assert first.getMessage() == "writing 5 records failed" and first.exc_info
    assert summary.getMessage() == (
        "writing 5 records failed (and 499 more like it in the last 60 s)"
    )
    assert not summary.exc_info


def test_a_new_error_is_logged_in_full_at_once(caplog: pytest.LogCaptureFixture) -> None:
    errors = RepeatedErrors(logging.getLogger("test.repeated"), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.repeated"):
        fail(errors, OSError(30, "Read-only file system"))
        fail(errors, OSError(28, "No space left on device"))
        fail(errors, OSError(28, "No space left on device"))

    assert [bool(r.exc_info) for r in caplog.records] == [True, True]
    assert "No space left" in str(caplog.records[1].exc_info)


def test_an_os_error_repeats_by_its_errno_whatever_file_it_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read-only store names the fresh staging file of each attempt in its error: every
    attempt looked new and was logged in full, 36 tracebacks in 6 s."""
    errors = RepeatedErrors(logging.getLogger("test.repeated"), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.repeated"):
        for n in range(20):
            staged = f"/store/.staging/{n:032x}.parquet.tmp"
            fail(errors, OSError(errno.EROFS, f"Failed to open local file '{staged}'"))
            fail(errors, PermissionError(errno.EACCES, "Permission denied", staged))

    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2  # one per errno
    assert "/store/.staging/" in str(tracebacks[0].exc_info)  # the first in full


def test_an_error_without_errno_repeats_by_its_message_without_paths_or_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = RepeatedErrors(logging.getLogger("test.repeated"), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.repeated"):
        for n in range(10):
            fail(errors, OSError(f"cannot write /store/.staging/{n:032x}.tmp: disk quota"))
        fail(errors, OSError("cannot write /store/.staging/x.tmp: stale file handle"))

    assert [bool(r.exc_info) for r in caplog.records] == [True, True]
    assert "stale file handle" in str(caplog.records[1].exc_info)


def test_errors_that_differ_in_more_than_a_path_are_not_merged() -> None:
    """Anything after a "/" was taken for a path: two type errors read as one."""
    one = ValueError("column in_x was int64/double")
    other = ValueError("column in_x was int64/string")
    assert error_key(one) != error_key(other)
    assert error_key(ValueError("no file /a/b.tmp")) == error_key(ValueError("no file /c/d.tmp"))
