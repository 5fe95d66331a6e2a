"""`faust -A app datagen`: random orders into the orders topic at a steady rate."""

import asyncio
import logging
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, ClassVar, NoReturn, cast

import click
import faust
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from faust.cli import AppCommand
from mode.utils.logging import level_number
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from app.settings import Settings
from app.topics import CreatedTopics, replication_factor, topic_configs
from core.datagen import MAX_BUYERS, OrderGenerator, encode, rows_due
from core.durations import parse_duration_ms
from core.timefmt import parse_time_ms

log = logging.getLogger(__name__)

BURST_ROWS = 1_000  # most rows sent between two looks at the clock and the progress bar
MAX_PENDING = 20_000  # delivery reports awaited at once: bounds memory at high rates


class OptionError(click.BadParameter):
    """A bad option value, shown as the single line `Error: Invalid value for '--x': ...`."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the error without click's usage lines."""
        click.echo(f"Error: {self.format_message()}", file=file or sys.stderr)


class Parsed(click.ParamType):
    """A click type from a `str -> value` function whose ValueError becomes an OptionError."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the option's text; values that are already parsed pass through."""
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as error:
            raise OptionError(str(error), ctx=ctx, param=param) from None


def parse_rate(text: str) -> float:
    """Rows per second: a finite number above 0."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{text} is not a rate above 0")
    return rate


def parse_whole(text: str) -> int:
    """A whole number written in decimal digits."""
    if re.fullmatch(r"\s*[+-]?\d+\s*", text) is None:
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def parse_rows(text: str) -> int:
    """Number of rows: 0 (unbounded) or more."""
    rows = parse_whole(text)
    if rows < 0:
        raise ValueError(f"{rows} is negative (0 means no limit)")
    return rows


def parse_buyers(text: str) -> int:
    """Size of the buyer pool: 1 to MAX_BUYERS."""
    buyers = parse_whole(text)
    if not 1 <= buyers <= MAX_BUYERS:
        raise ValueError(f"{buyers} is not between 1 and {MAX_BUYERS}")
    return buyers


def parse_start_time(text: str) -> int:
    """Epoch ms from epoch milliseconds or ISO-8601 text."""
    if re.fullmatch(r"\s*-?\d+\s*", text):
        return int(text)
    return parse_time_ms(text.strip())


OPTIONS = [
    faust.cli.option("--rows-per-second", type=Parsed("rate", parse_rate), default="10",
                     help="Orders per second; a large value sends as fast as possible."),
    faust.cli.option("--number-of-rows", type=Parsed("rows", parse_rows), default="100",
                     help="Orders to send; 0 sends until interrupted."),
    faust.cli.option("--seed", type=Parsed("integer", parse_whole), default=None,
                     help="Repeat the same order numbers, buyers and prices run to run."),
    faust.cli.option("--start-time", type=Parsed("time", parse_start_time), default=None,
                     help="Event time of the first order (ISO-8601 or epoch ms); then one "
                          "order every 1/rate seconds of event time, not the wall clock."),
    faust.cli.option("--buyers", type=Parsed("count", parse_buyers), default="20",
                     help="Size of the buyer pool orders are drawn from."),
    faust.cli.option("--max-out-of-order", type=Parsed("duration", parse_duration_ms),
                     default="0s", help="Move each order time back by a random 0..D."),
]


@dataclass
class Tally:
    """Rows sent so far and when sending began (monotonic seconds)."""

    sent: int = 0
    started_s: float = 0.0

    def summary(self, topic: str) -> str:
        """The one line printed at the end of a run."""
        elapsed_s = max(time.monotonic() - self.started_s, 1e-9) if self.started_s else 0.0
        rate = self.sent / elapsed_s if elapsed_s else 0.0
        return (f"datagen: sent {self.sent} orders to {topic} in {elapsed_s:.1f}s "
                f"({rate:.1f} rows/s)")


class RateColumn(ProgressColumn):
    """Rows per second measured by rich over its recent window."""

    def render(self, task: Task) -> Text:
        """`12.3 rows/s`."""
        return Text(f"{task.speed or 0:,.1f} rows/s", style="progress.data.speed")


@contextmanager
def progress_bar(stream: IO[str], total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield `update(rows_sent)`: a rich bar on a terminal, nothing otherwise."""
    if not stream.isatty():
        yield lambda _sent: None
        return
    columns = (TextColumn("datagen"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=stream)) as progress:
        task = progress.add_task("datagen", total=total)
        yield lambda sent: progress.update(task, completed=sent)


async def ensure_orders_topic(settings: Settings) -> None:
    """Create the orders topic with TOPIC_PARTITIONS partitions unless it exists (then kept)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=10_000)
    await admin.start()
    try:
        if settings.orders_topic in await admin.list_topics():
            return
        replication = await replication_factor(settings)
        topic = NewTopic(settings.orders_topic, settings.topic_partitions, replication,
                         topic_configs=topic_configs(settings, replication)[settings.orders_topic])
        response = cast(CreatedTopics, await admin.create_topics([topic]))
        for _name, code, *_message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"cannot create topic {settings.orders_topic}")
    finally:
        await admin.close()


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer that batches for a few ms, so high rates go out in large requests; every
    order on every in-sync replica before it counts as sent (acks=all)."""
    return AIOKafkaProducer(**settings.kafka_client, client_id="orderstream-datagen",
                            acks="all", linger_ms=5, max_batch_size=256 * 1024)


async def settle(pending: list["asyncio.Future[Any]"]) -> None:
    """Wait for delivery reports; the first failed send raises."""
    await asyncio.gather(*pending)
    pending.clear()


async def send_orders(producer: AIOKafkaProducer, topic: str, generator: OrderGenerator,
                      rate: float, rows: int, tally: Tally,
                      on_progress: Callable[[int], None]) -> None:
    """Send `rows` orders (0: no limit) paced at `rate` per second; row i is due at i/rate."""
    pending: list[asyncio.Future[Any]] = []
    tally.started_s = time.monotonic()
    while rows == 0 or tally.sent < rows:
        due = min(rows_due(time.monotonic() - tally.started_s, rate), tally.sent + BURST_ROWS)
        due = min(due, rows) if rows else due
        if due <= tally.sent:
            await asyncio.sleep(tally.sent / rate - (time.monotonic() - tally.started_s))
            continue
        now_ms = int(time.time() * 1000)
        for _ in range(due - tally.sent):
            key, value = encode(generator.next_order(now_ms))
            pending.append(await producer.send(topic, value, key=key))
        tally.sent = due
        on_progress(due)
        if len(pending) >= MAX_PENDING:
            await settle(pending)
        await asyncio.sleep(0)  # let the producer's sender run between bursts
    await producer.flush()
    await settle(pending)


async def run_datagen(settings: Settings, generator: OrderGenerator, rate: float, rows: int,
                      tally: Tally, on_progress: Callable[[int], None]) -> None:
    """Create the orders topic if missing, then produce; stopping flushes what was sent."""
    await ensure_orders_topic(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_orders(producer, settings.orders_topic, generator, rate, rows, tally,
                          on_progress)
    finally:
        await producer.stop()


def cancel_on_sigterm() -> None:
    """Make SIGTERM stop the run like Ctrl-C does: flush what was sent, then exit."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


class DatagenCommand(AppCommand):
    """An app command run on a plain event loop: it needs a producer, not the worker's state."""

    abstract: ClassVar[bool] = True
    settings: ClassVar[Settings]

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Run the command; broker errors end it with one line, Ctrl-C after a flush."""
        logging.basicConfig(level=level_number(self.loglevel), stream=self.stderr,
                            format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
        try:
            asyncio.run(self.execute(*self.args, *args, **{**self.kwargs, **kwargs}))
        except KeyboardInterrupt:
            sys.exit(130)
        except asyncio.CancelledError:  # SIGTERM, see cancel_on_sigterm
            sys.exit(143)
        except (KafkaError, OSError) as error:
            click.echo(f"orderstream: {error or type(error).__name__}", file=self.stderr)
            sys.exit(1)
        sys.exit(0)


def register_datagen_command(app: faust.App, settings: Settings) -> None:
    """Add `datagen` to `faust -A <module>`: orders of SPEC.md into settings.orders_topic."""

    @app.command(*OPTIONS, base=DatagenCommand, settings=settings)
    async def datagen(self: DatagenCommand, rows_per_second: float, number_of_rows: int,
                      seed: int | None, start_time: int | None, buyers: int,
                      max_out_of_order: int) -> None:
        """Send random orders to the orders topic, like Flink's datagen connector."""
        cancel_on_sigterm()
        generator = OrderGenerator(seed=seed, buyers=buyers, max_out_of_order_ms=max_out_of_order,
                                   start_time_ms=start_time, rows_per_second=rows_per_second)
        tally = Tally()
        try:
            with progress_bar(self.stderr, number_of_rows or None) as on_progress:
                await run_datagen(self.settings, generator, rows_per_second, number_of_rows,
                                  tally, on_progress)
        except asyncio.CancelledError:
            self.say(tally.summary(self.settings.orders_topic))
            raise
        self.say(tally.summary(self.settings.orders_topic))
