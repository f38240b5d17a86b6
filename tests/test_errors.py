"""One-line messages: what every refusal and failure report of the project is made of."""

import pytest

from brainprop.utils.errors import one_line, plural

pytestmark = pytest.mark.backend_independent


def test_a_message_over_several_lines_becomes_one_line_with_single_spaces():
    message = "Unable to open file\n  (file signature not found)\t\n"
    assert one_line(message) == "Unable to open file (file signature not found)"


def test_an_exception_gives_its_message():
    assert one_line(ValueError("bad\nvalue")) == "bad value"


def test_an_exception_without_a_message_gives_its_type():
    assert one_line(KeyError()) == "KeyError"
    assert one_line("") == ""


@pytest.mark.parametrize("limit", [10, 120, 200])
def test_a_long_message_is_cut_to_the_limit_and_says_so(limit):
    line = one_line("word " * 100, limit)
    assert len(line) == limit
    assert line.endswith("...")
    assert one_line("x" * limit, limit) == "x" * limit


def test_last_keeps_the_last_non_empty_line_where_a_log_puts_the_error():
    log = "Epoch 1/2\nTraceback (most recent call last):\n  ...\nOSError: disk full\n\n  \n"
    assert one_line(log, last=True) == "OSError: disk full"
    assert one_line("\n \n", last=True) == ""


@pytest.mark.parametrize("count,expected", [(0, "0 runs"), (1, "1 run"), (2, "2 runs")])
def test_plural(count, expected):
    assert plural(count, "run") == expected
