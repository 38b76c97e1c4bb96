"""The pytest form of the budget: fails with the estimate, the budget and the top layers."""

from fodlam.testing import assert_within_budget

from models import small_cnn


def test_small_cnn_within_budget():
    assert_within_budget(small_cnn(), (1, 3, 64, 64), energy="1 mJ", latency="5 ms")
