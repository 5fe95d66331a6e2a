"""Each aggregator alone, and a window row made of them, against values worked by hand."""

from decimal import Decimal as D

import pytest

from core.aggregators import ROW, Avg, Count, Max, Min, Sum

PRICES = [D("2.50"), D("0.10"), D("9.99"), D("0.10")]


@pytest.mark.parametrize(("aggregator", "result"), [
    (Count(), 4), (Sum(), "12.69"), (Min(), "0.10"), (Max(), "9.99"), (Avg(), "3.17"),
])
def test_added_one_by_one_or_merged_in_halves_gives_the_same_result(aggregator, result):
    state = aggregator.initial(PRICES[0])
    for price in PRICES[1:]:
        state = aggregator.add(state, price)
    assert aggregator.result(state) == result
    left = aggregator.add(aggregator.initial(PRICES[0]), PRICES[1])
    right = aggregator.add(aggregator.initial(PRICES[2]), PRICES[3])
    assert aggregator.result(aggregator.merge(right, left)) == result


def test_avg_rounds_half_even_to_cents():
    avg = Avg()
    assert avg.result(avg.add(avg.initial(D("0.01")), D("0.02"))) == "0.02"  # 0.015
    assert avg.result(avg.add(avg.initial(D("0.02")), D("0.03"))) == "0.02"  # 0.025


def test_a_row_keeps_four_states_and_derives_the_average_from_count_and_sum():
    state = ROW.initial(D("4.00"))
    ROW.add(state, D("1.00"))
    other = ROW.initial(D("7.00"))
    ROW.merge(state, other)
    assert state == [3, D("12.00"), D("1.00"), D("7.00")]
    assert ROW.results(state) == {"count": 3, "sum_price": "12.00", "min_price": "1.00",
                                  "max_price": "7.00", "avg_price": "4.00"}
