"""This worker's place in the consumer group: its assignment, what it does on a
rebalance, its readiness, and every member's URL and partitions (for the API)."""

import logging
from typing import cast

import faust
from faust.assignor import PartitionAssignor

from agents.aggregate import AggregateStage
from agents.ingest import IngestStage
from app.guard import BrokerGuard
from app.metrics import Metrics
from app.topics import TopicNames
from core.timefmt import wall_ms

log = logging.getLogger(__name__)


class Membership:
    """Rebalances (eager: nothing is ours between a revocation and the next assignment)
    and what they mean for the stores, the stages and readiness."""

    def __init__(self, app: faust.App, names: TopicNames, advertised_url: str,
                 ingest: IngestStage, aggregate: AggregateStage, guard: BrokerGuard,
                 metrics: Metrics) -> None:
        self.app, self.names, self.advertised_url = app, names, advertised_url
        self.ingest, self.aggregate, self.guard = ingest, aggregate, guard
        self.metrics = metrics
        self.status = "starting"  # then rebalancing and assigned, in turn
        self._generation: int | None = None  # the group generation of the last assignment

    async def revoked(self) -> None:
        """Eager rebalance: nothing is ours until the next assignment."""
        self.status = "rebalancing"
        await self.ingest.stores.on_revoked()
        await self.aggregate.stores.on_revoked()

    async def assigned(self, assigned: set[faust.types.TP]) -> None:
        """Open and restore the stores of the new assignment."""
        self.metrics.rebalances.inc()
        ingest_topics = (self.names.orders, self.names.rekey)
        sources = {tp.partition for tp in assigned if tp.topic in ingest_topics}
        self.ingest.assigned(sources, wall_ms())
        self.aggregate.assigned()
        rebuild = self._missed_generation()
        await self.ingest.stores.on_assigned(sources, rebuild)
        await self.aggregate.stores.on_assigned({tp.partition for tp in assigned
                                                 if tp.topic == self.names.by_buyer}, rebuild)
        self.guard.unsettle()  # a group the broker lost comes back as a rebalance
        self.status = "assigned"

    def _missed_generation(self) -> bool:
        """Whether the group went through a generation without this worker since its last
        assignment: it was expelled (a long pause, a network partition), and its open
        stores may hold batches it wrote after another owner fenced their partitions."""
        generation = self.app.consumer_generation_id
        previous, self._generation = self._generation, generation
        if previous is None or generation <= previous + 1:
            return False
        log.warning("the group moved from generation %d to %d without this worker (it was "
                    "expelled, or missed a rebalance): restoring the stores it held from "
                    "their changelogs", previous, generation)
        return True

    @property
    def restored(self) -> bool:
        """Assigned, with every store of the assignment restored."""
        return self.status == "assigned" and not (self.ingest.stores.restoring
                                                  or self.aggregate.stores.restoring)

    @property
    def readiness(self) -> str:
        """`ready`, or why not: `starting`, `rebalancing`, `restoring`, `broker-lost`."""
        if self.guard.reason is not None:
            return "broker-lost"
        if self.status != "assigned":
            return self.status
        return "ready" if self.restored else "restoring"

    def members(self) -> dict[str, set[int]]:
        """Every worker of the group (advertised URL) and its aggregation partitions."""
        members: dict[str, set[int]] = {}
        # faust's PartitionAssignor (table_standby_replicas > 0, app.main)
        assignor = cast(PartitionAssignor, self.app.assignor)
        for url, topics in assignor.external_topics_metadata().items():
            members[str(url).rstrip("/")] = set(topics.get(self.names.by_buyer, ()))
        members.setdefault(self.advertised_url.rstrip("/"), set(self.aggregate.stores.assigned))
        return members
