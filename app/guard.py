"""The broker's checks around the state of one worker: does the broker still hold what
the state was built from? (SPEC.md, what a lost broker gets.)

Every batch waits until the worker is settled (after a rebalance or any sign of trouble,
every position the restored stores hold is checked against the broker), checks the
record it reads and the changelog offset it writes, and stops at once when a loss is
known. A loss answers 503 for a moment, names every partition lost in one ERROR line,
and ends the process (on the embedded broker: starts it again, clean)."""

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable

from faust.types import TP

from agents.ports import Highwater
from app.brokerwatch import CHECK_INTERVAL_S, UNREACHABLE_AFTER_S, Loss, Watch
from app.settings import Settings
from app.statecheck import (
    discard_state,
    lost_message,
    merge_positions,
    save_topic_ids,
    stage_positions,
)
from tables.changelog import BrokerLost, StoreAheadOfChangelog
from tables.manager import StoreManager

LOSS_503_S = 1.0  # after a loss, how long /ready says so before the process ends
CLEAN_START_ENV = "ORDERSTREAM_CLEAN_START"  # set across the exec after a loss

log = logging.getLogger(__name__)


class BrokerGuard:
    """The checks (agents.ports.Guard) and what a loss does."""

    def __init__(self, settings: Settings, stages: list[tuple[StoreManager, str | None]],
                 highwater: Highwater, crash: Callable[[BaseException], None],
                 stopping: Callable[[], bool], exit_code: Callable[[], int]) -> None:
        """`stages`: each stage's stores and the input topic whose offsets they hold
        (None: the stores keep their sources' offsets under their own keys). `crash`
        stops the worker on an error; `stopping` says whether a stop has begun, and
        `exit_code` with which code it ends."""
        self.settings, self.stages, self.highwater = settings, stages, highwater
        self.crash, self.stopping, self.exit_code = crash, stopping, exit_code
        self.watch = Watch(settings.kafka_client)
        self.loss: Loss | None = None  # what the broker lost, once noticed: then it stops
        self._doubt = False  # after an outage: not ready until a check passes
        # after any sign of broker trouble or a rebalance: no batch until a check passes
        self._unsettled = False
        self._settling = asyncio.Lock()

    @property
    def reason(self) -> str | None:
        """Why the worker is `broker-lost`: what the broker lacks, since when it is silent,
        or that it is back and not yet checked against the state; None when it is not."""
        if self.loss is not None:
            return f"{self.loss.detail} (lost: {self.loss.topics})"
        unreachable = self.watch.unreachable_s
        if unreachable > UNREACHABLE_AFTER_S:
            self._doubt = True  # until a check against restored stores passes
            return (f"the broker at {self._brokers} has not answered for "
                    f"{unreachable:.0f} s")
        if self._doubt:
            return (f"checking that the broker at {self._brokers} still has what the state "
                    "reflects, after a sign of trouble")
        return None

    @property
    def _brokers(self) -> str:
        return ",".join(self.settings.broker_urls)

    async def check(self, restored: bool) -> None:
        """The periodic check: does the broker still end past every position the state
        holds? `restored`: every assigned store is restored, so a pass clears the doubt."""
        if self.loss is not None:
            return
        if await self._check_held():
            self._unsettled = False
            if restored:
                self._doubt = False  # every restored store checked against the broker
        else:
            self.doubt()

    async def _check_held(self) -> bool:
        """Every position the restored stores hold, against the broker: True when it
        answered and backs them all; a loss is reported (`broker_lost`)."""
        asked = time.monotonic()
        loss = await self.watch.poll(self.held_positions())
        if loss is not None:
            self.broker_lost(loss)
            return False
        if self.watch.learned:  # a topic the state now holds positions in
            self.watch.learned = False
            save_topic_ids(self.settings, self.watch.ids)
        return (self.watch.answered or 0) >= asked

    def unsettle(self) -> None:
        """A rebalance, or a sign of broker trouble: the next batch waits for a full check
        (`settled`)."""
        self._unsettled = True

    def doubt(self) -> None:
        """A sign of broker trouble (the Kafka client logged a lost connection or a failed
        request, a check went unanswered): not ready, and no data route answers, until a
        check against the restored stores passes (at most CHECK_INTERVAL_S when the broker
        answers). A broker back empty within a second of going down would otherwise be
        taken for the old one until the next check."""
        self._doubt = True
        self.unsettle()

    async def settled(self) -> None:
        """Before a batch reads a store or sends anything: once unsettled, every position
        the state holds checked against the broker. A broker back empty and refilled past
        the stores' offsets passes the per-batch checks, and what a batch then wrote to
        its recreated topics could not be taken back (tansu keeps records it took for a
        topic it did not have, and refuses that topic's records at those offsets ever
        after). The batch's own check (`check_read`, `check_backed`) then raises on a
        loss."""
        while self._unsettled and self.loss is None:
            async with self._settling:
                if not self._unsettled:
                    break
                self._unsettled = False  # trouble from here on sets it again
                if not await self._check_held() and self.loss is None:
                    self._unsettled = True  # no answer: ask again
                    await asyncio.sleep(CHECK_INTERVAL_S / 4)

    def held_positions(self) -> dict[tuple[str, int], int]:
        """The last offset of each partition the restored stores hold a position in:
        their changelog records and the input records they applied."""
        held: dict[tuple[str, int], int] = {}
        for stores, read_topic in self.stages:
            for partition, store in stores.read_only_view().items():
                merge_positions(held, stage_positions(store, stores.changelog_topic,
                                                      read_topic, partition))
        return held

    def check_read(self, topic: str, partition: int, applied: int) -> None:
        """Before a batch is applied: the broker must still have the record at the store's
        position (`applied`), or what it now delivers would be skipped as applied."""
        highwater = self.highwater(topic, partition)
        if self.loss is None and highwater is not None and highwater <= applied:
            self.broker_lost(Loss({topic: (partition,)}, (
                f"{topic}[{partition}] ends at offset {highwater} but the state applied "
                f"offset {applied}")))
        self.check_backed()

    def check_written(self, topic: str, partition: int, offset: int, reflected: int) -> None:
        """After a changelog record is sent: it must land past what the store reflects, or
        the changelog was emptied or recreated."""
        if offset <= reflected:
            self.broker_lost(Loss({topic: (partition,)}, (
                f"{topic}[{partition}] took a record at offset {offset} but the state "
                f"reflects offset {reflected}")))
        self.check_backed()

    def rewound(self, tp: TP, expected: int, got: int) -> None:
        """The consumer was reset to an offset before what it had read (app.faust.transport)."""
        self.broker_lost(Loss({tp.topic: (tp.partition,)}, (
            f"{tp.topic}[{tp.partition}] went back from offset {expected} to {got}")))

    def check_backed(self) -> None:
        """Raise BrokerLost once a loss is known: nothing more may be applied or sent."""
        if self.loss is not None:
            raise BrokerLost(self.loss.detail)

    def fail(self, error: BaseException) -> None:
        """Stop the worker on an error it must not continue past; a store found ahead of
        its changelog while restoring is a loss."""
        if isinstance(error, StoreAheadOfChangelog):
            self.broker_lost(Loss({error.topic: (error.partition,)}, str(error)))
            return
        self.crash(error)

    def broker_lost(self, loss: Loss) -> None:
        """Stop applying at once and answer 503; then say what was lost and end the process
        (`_report_loss`, `after_loss`)."""
        if self.loss is not None:
            return
        self.loss = loss
        asyncio.ensure_future(self._report_loss(loss))

    async def _report_loss(self, first: Loss) -> None:
        """One full check, so the line names every partition lost, not only the first seen."""
        with contextlib.suppress(Exception):
            if (full := await self.watch.poll(self.held_positions())) is not None:
                self.loss = first = full.merged(first)
        if not self.settings.embedded_broker:
            log.error("orderstream: %s", lost_message(self.settings, first, "stopping"))
        await asyncio.sleep(LOSS_503_S)
        self.after_loss()

    def exit_after_loss(self) -> None:
        """Before a stop that ran out of time ends the process: a loss's own ending."""
        if self.loss is not None:
            self.after_loss()

    def after_loss(self) -> None:
        """End the process after a loss: nothing of it is worth a graceful stop (nothing
        more is applied, sent or committed). On the embedded broker, which keeps nothing:
        discard the state and start again, clean, in this process (one WARNING), unless
        the worker is being stopped anyway. On another broker: exit 1, having said what was
        lost and how to start over."""
        assert self.loss is not None
        if not self.settings.embedded_broker:
            logging.shutdown()
            os._exit(1)
        discard_state(self.settings)
        if self.stopping():  # SIGTERM, Ctrl-C or a crash meanwhile: stop, clean
            logging.shutdown()
            os._exit(self.exit_code())
        log.warning("the embedded broker at %s restarted empty (%s): removed the state in %s "
                    "and starting clean", self._brokers, self.loss.detail,
                    self.settings.state_dir)
        logging.shutdown()
        for fd in map(int, os.listdir("/proc/self/fd")):  # the API socket above all
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.set_inheritable(fd, False)
        # the new process recreates the internal topics: records this one sent to the
        # empty broker before it noticed (buffered sends, timers) must not come back
        os.environ[CLEAN_START_ENV] = "1"
        os.execv(sys.executable, sys.orig_argv)
