"""The order record as the job sees it after parsing."""

from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple


class Order(NamedTuple):
    """A valid order: money exact, time in epoch milliseconds (UTC)."""

    order_number: int
    price: Decimal
    first_name: str
    last_name: str
    order_time_ms: int

    @property
    def buyer(self) -> tuple[str, str]:
        return (self.first_name, self.last_name)


Buyer = tuple[str, str]  # first name, last name
WindowResult = tuple[bytes, bytes]  # a final window row's window-results record: key, value


@dataclass(frozen=True, slots=True)
class Total:
    """A buyer's count and exact sum."""

    count: int
    total_price: Decimal


def buyer_json(first_name: str, last_name: str) -> dict[str, str]:
    """The buyer object of every message and API answer."""
    return {"first_name": first_name, "last_name": last_name}
