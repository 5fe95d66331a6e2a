"""Aggregators: small objects with fixed-size state (initial, add, merge, result), as
quix-streams' and Flink's aggregate functions are. A window row is `ROW`: the states of
its stored aggregators, in order, and the results of those derived from them.

Prices are exact Decimals; callers add them in core.money's MONEY_CONTEXT. A new aggregate
is a class here, a place in `ROW`, and a field of the API's window item.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from core.money import average, money_str

S = TypeVar("S")


class Aggregator(Protocol[S]):
    """One aggregate over the prices of a window row."""

    name: str  # its field in a window row (API and window-results)

    def initial(self, price: Decimal) -> S: ...

    def add(self, state: S, price: Decimal) -> S: ...

    def merge(self, state: S, other: S) -> S: ...

    def result(self, state: S) -> object: ...


class Count:
    name = "count"

    def initial(self, price: Decimal) -> int:
        return 1

    def add(self, state: int, price: Decimal) -> int:
        return state + 1

    def merge(self, state: int, other: int) -> int:
        return state + other

    def result(self, state: int) -> object:
        return state


class Sum:
    name = "sum_price"

    def initial(self, price: Decimal) -> Decimal:
        return price

    def add(self, state: Decimal, price: Decimal) -> Decimal:
        return state + price

    def merge(self, state: Decimal, other: Decimal) -> Decimal:
        return state + other

    def result(self, state: Decimal) -> object:
        return money_str(state)


class Min(Sum):
    name = "min_price"

    def add(self, state: Decimal, price: Decimal) -> Decimal:
        return price if price < state else state

    def merge(self, state: Decimal, other: Decimal) -> Decimal:
        return other if other < state else state


class Max(Sum):
    name = "max_price"

    def add(self, state: Decimal, price: Decimal) -> Decimal:
        return price if price > state else state

    def merge(self, state: Decimal, other: Decimal) -> Decimal:
        return other if other > state else state


class Avg:
    """The mean to 2 places, half-even; its state is `(count, sum)`."""

    name = "avg_price"

    def initial(self, price: Decimal) -> tuple[int, Decimal]:
        return (1, price)

    def add(self, state: tuple[int, Decimal], price: Decimal) -> tuple[int, Decimal]:
        return (state[0] + 1, state[1] + price)

    def merge(self, state: tuple[int, Decimal],
              other: tuple[int, Decimal]) -> tuple[int, Decimal]:
        return (state[0] + other[0], state[1] + other[1])

    def result(self, state: tuple[int, Decimal]) -> object:
        return money_str(average(state[1], state[0]))


State = list[Any]  # one state per stored aggregator of a RowAggregate


@dataclass(frozen=True)
class Derived:
    """An aggregator whose state is a tuple of stored aggregators' states (avg's is count's
    and sum's), so a row keeps each state once."""

    aggregator: Aggregator[Any]
    sources: tuple[int, ...]  # positions of its state's parts among the stored aggregators


@dataclass(frozen=True)
class RowAggregate:
    """The aggregators of a window row: `stored` keep a state each, `derived` read theirs."""

    stored: tuple[Aggregator[Any], ...]
    derived: tuple[Derived, ...] = ()
    _adds: tuple[tuple[int, Callable[[Any, Decimal], Any]], ...] = field(init=False, repr=False)
    _merges: tuple[tuple[int, Callable[[Any, Any], Any]], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # bound methods by position, looked up once: add runs once per order
        object.__setattr__(self, "_adds", tuple(enumerate(a.add for a in self.stored)))
        object.__setattr__(self, "_merges", tuple(enumerate(a.merge for a in self.stored)))

    def initial(self, price: Decimal) -> State:
        return [aggregator.initial(price) for aggregator in self.stored]

    def add(self, state: State, price: Decimal) -> None:
        for i, add in self._adds:
            state[i] = add(state[i], price)

    def merge(self, state: State, other: Sequence[Any]) -> None:
        for i, merge in self._merges:
            state[i] = merge(state[i], other[i])

    def results(self, state: Sequence[Any]) -> dict[str, object]:
        """Every aggregate of a row by its field name, stored ones first."""
        found = {a.name: a.result(s) for a, s in zip(self.stored, state, strict=False)}
        for d in self.derived:
            found[d.aggregator.name] = d.aggregator.result(tuple(state[i] for i in d.sources))
        return found


ROW = RowAggregate(stored=(Count(), Sum(), Min(), Max()), derived=(Derived(Avg(), (0, 1)),))
COUNT = 0  # the position of Count in ROW: ranking reads it without decoding a row
