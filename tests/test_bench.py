import pytest

from mlplab.bench import RATIOS, paired_ratios


def test_ratios_are_taken_within_each_repetition_so_drift_cancels():
    # The machine runs twice as slow in the second repetition: both contenders slow down alike.
    seconds = {name: [1.0, 2.0, 1.0] for pair in RATIOS for name in pair}
    seconds["mlplab"] = [1.5, 3.0, 1.2]
    seconds["plain_loop"] = [1.0, 2.0, 1.0]
    ratio = paired_ratios(seconds)["mlplab / plain_loop"]
    assert ratio == {"median": 1.5, "min": 1.2, "max": 1.5}
    assert paired_ratios(seconds)["course_loop / mlplab"]["median"] == pytest.approx(1 / 1.5)
