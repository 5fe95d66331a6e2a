"""The job graph the dashboard draws and /metrics labels: the operators in order, each with
what its records are, and the two tasks they run chained in (as Flink chains operators):
the ingest agent runs source to repartition in one call per batch, the aggregate agent
aggregate and sinks. Only a task's ends wait: its head on its input, its tail on the
broker's acknowledgement of its output."""

from typing import NamedTuple


class Operator(NamedTuple):
    name: str
    task: str
    records: str  # what goes in and out, for the page
    waits_on: str | None  # "input", "output", or None: chained, no queue of its own


OPERATORS = (
    Operator("source", "ingest", "messages read from the orders topic, read again after a "
             "restart included", "input"),
    Operator("parse", "ingest", "messages not applied before in, valid orders out (the rest "
             "to orders-dlq)", None),
    Operator("dedup", "ingest", "orders in, first copies out (conflicts to orders-dlq, too "
             "old to orders-late)", None),
    Operator("repartition", "ingest", "orders in, records out to the by-buyer topic (orders "
             "of a buyer partition, or only a watermark) and copies to their number's owner",
             "output"),
    Operator("aggregate", "aggregate", "orders in, buyer-total changes and final window "
             "rows out", "input"),
    Operator("sinks", "aggregate", "changes in, records to buyer-totals and window-results "
             "out", "output"),
)
OPERATOR_NAMES = tuple(operator.name for operator in OPERATORS)
