"""The release's learning-rate schedule."""

import pytest

from brainprop.train.schedule import LR_SCHEDULE, learning_rate_at

pytestmark = pytest.mark.backend_independent


def test_learning_rate_halves_every_100_epochs():
    assert [learning_rate_at(e, 0.1) for e in (0, 99, 100, 199, 200, 499)] == [
        0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5**4
    ]


def test_the_written_schedule_is_the_one_applied():
    for epoch in (0, 150, 420):
        assert eval(LR_SCHEDULE, {}, {"learning_rate": 0.3, "epoch": epoch}) == learning_rate_at(epoch, 0.3)
