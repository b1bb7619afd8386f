"""tests/support/polling.py: the tests' one wait."""

import pytest

from tests.support.polling import eventually


def test_eventually_returns_what_the_check_found_once_it_holds():
    answers = iter([None, 0, "", {"ready": True}])
    assert eventually(lambda: next(answers), "an answer", 5, every=0) == {"ready": True}


def test_eventually_fails_naming_what_never_came_with_its_detail():
    with pytest.raises(TimeoutError, match=r"timed out after 0.05s waiting for the pod\nlast log line"):
        eventually(lambda: False, "the pod", 0.05, every=0.01, detail=lambda: "last log line")


def test_an_ignored_error_is_not_yet_and_any_other_error_stops_the_wait():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return "up"

    assert eventually(flaky, "the server", 5, every=0, ignoring=(OSError,)) == "up"
    with pytest.raises(ZeroDivisionError):
        eventually(lambda: 1 / 0, "a number", 5, every=0, ignoring=(OSError,))
