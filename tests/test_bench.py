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


def test_arithmetic_rates_are_the_epochs_flops_over_each_repetitions_matrix_product_rate():
    from mlplab.bench import (
        MATMUL_SIZE,
        PACKED,
        PACKED_LOOP,
        PACKED_PRODUCTS,
        arithmetic_rates,
        course_network,
    )
    from mlplab.model.compute import training_flops

    flops = training_flops(course_network(), 1000)
    matmul = 2 * MATMUL_SIZE**3 / 1e11  # a 100 GFLOP/s product; then half as fast
    seconds = {name: [1.0, 2.0] for name in ("plain_loop", "mlplab", PACKED_LOOP, PACKED_PRODUCTS)}
    seconds[PACKED] = [0.5, 1.0]
    rates = arithmetic_rates({**seconds, "matmul": [matmul, 2 * matmul]}, 1000)
    assert rates["matmul"]["median"] == pytest.approx(75.0)
    assert rates[PACKED]["max"] == pytest.approx(flops / 0.5 / 1e9)
    # The machine slowed down alike for both: the share of its arithmetic stays put.
    share = rates[f"{PACKED} / matmul"]
    assert share["min"] == pytest.approx(share["max"]) == pytest.approx(flops / 0.5 / 1e11)
