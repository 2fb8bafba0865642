"""Keeps one server process in step with the rollout state in the SQL store.

Every poll it looks at the revisions of the names it serves. On a new revision it loads and warms
the versions the policy needs, then routes by the policy, then retires versions that left it once
their requests in flight are done. It also writes the figures it counted and judges running
canaries (any process may; one write per revision wins).

It follows any server that answers to `Served`: the inference server's data plane does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

from pallet.errors import PalletError
from pallet.rollout.figures import VersionTraffic
from pallet.rollout.operations import Rollouts
from pallet.rollout.state import Rollout
from pallet.store import Store

log = logging.getLogger("pallet.rollout")
RETRY_SECONDS = 30
PROCESS = f"pallet serve {socket.gethostname()}:{os.getpid()}"


class Served(Protocol):
    """What a rollout needs of the server it steers: the models it holds, the policy each name routes
    by, the figures counted under it, and ways to load, route by and retire versions."""

    @property
    def store(self) -> Store: ...

    @property
    def models(self) -> Mapping[str, Mapping[str, Any]]:
        """name -> version -> the model loaded for it."""

    @property
    def rollouts(self) -> Mapping[str, Rollout]:
        """name -> the rollout it routes by, when it has one."""

    @property
    def figures(self) -> Mapping[str, Mapping[str, VersionTraffic]]:
        """name -> version -> counted at the rollout's revision."""

    def names(self) -> list[str]: ...

    def prepare(self, ref: str) -> Any:
        """A version loaded and warmed, not yet served (slow: called off the event loop)."""

    def register(self, model: Any) -> Any:
        """Serve a model `prepare` returned."""

    def apply(self, rollout: Rollout) -> None:
        """Route the name's requests by the rollout's policy."""

    async def retire(self, name: str, number: str) -> None:
        """Stop serving a version once its requests in flight are done."""


class RolloutSync:
    def __init__(self, plane: Served, rollouts: Rollouts, poll_seconds: float = 1.0):
        self.plane = plane
        self.rollouts = rollouts
        self.poll_seconds = poll_seconds
        self.failed: dict[str, tuple[int, float]] = {}     # name -> (revision not applied, when to try again)
        self.flushed: dict[str, tuple[int, int]] = {}      # name -> (revision, answers) last written
        self.last_error = ""
        self.retiring: set[asyncio.Task] = set()

    @classmethod
    def open(cls, plane: Served, poll_seconds: float) -> RolloutSync | None:
        """The sync for `plane`, or None (with a warning) when the store's database cannot hold rollouts."""
        try:
            return cls(plane, Rollouts(plane.store, actor=PROCESS), poll_seconds)
        except PalletError as e:
            log.warning("rollouts are off on this server: %s", e)
            return None

    async def run(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self.poll_seconds)

    async def sync_once(self) -> None:
        """One step, its failure logged (once until it changes) rather than raised: with the database
        away, a server starts on the models it was given and follows the policies once it answers."""
        try:
            await self.step()
            self.last_error = ""
        except Exception as e:  # the database may be away for a moment: keep serving, say so once
            if str(e) != self.last_error:
                log.error("rollout sync failed (serving on with the last policy): %s", e)
                self.last_error = str(e)

    async def step(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.rollouts.state
        revisions = await loop.run_in_executor(None, state.revisions, self.plane.names())
        for name, revision in revisions.items():
            applied = self.plane.rollouts.get(name)
            failed_revision, retry_at = self.failed.get(name, (None, 0.0))
            if applied is not None and applied.revision == revision:
                continue
            if failed_revision == revision and time.monotonic() < retry_at:
                continue
            rollout = await loop.run_in_executor(None, state.get, name)
            if rollout is not None:
                await self.apply(rollout)
        for name, rollout in list(self.plane.rollouts.items()):
            if name not in revisions:  # its rollout ended (its stable version was removed): nothing to count for
                continue
            counted = dict(self.plane.figures.get(name, {}))
            mark = (rollout.revision, sum(f.requests + f.shadowed for f in counted.values()))
            if self.flushed.get(name) != mark:  # only what changed is written
                await loop.run_in_executor(None, state.put_figures, name, rollout.revision, PROCESS, counted)
                self.flushed[name] = mark
            if rollout.canary is not None:
                changed = await loop.run_in_executor(None, self.rollouts.tick, name)
                if changed is not None:
                    (event,) = await loop.run_in_executor(None, self.rollouts.history, name, 1)
                    log.info("canary of %s: %s: %s", name, event.action, event.reason)

    async def apply(self, rollout: Rollout) -> None:
        """Load and warm what the policy needs, route by it, then retire what it no longer names.
        A version that cannot be loaded leaves the server on its current policy; it tries again later."""
        loop = asyncio.get_running_loop()
        name, plane = rollout.name, self.plane
        prepared = []
        for version in rollout.policy.versions:
            if version not in plane.models.get(name, {}):
                try:
                    prepared.append(await loop.run_in_executor(None, plane.prepare, f"{name}:{version}"))
                except Exception as e:  # a missing, corrupt or failing version: keep serving what works
                    self.failed[name] = (rollout.revision, time.monotonic() + RETRY_SECONDS)
                    log.error("rollout of %s revision %d not applied (retrying in %d s): cannot load %s:%s: %s",
                              name, rollout.revision, RETRY_SECONDS, name, version, e)
                    return
        for model in prepared:
            plane.register(model)
        plane.apply(rollout)
        self.failed.pop(name, None)
        log.info("%s routes by rollout revision %d: %s", name, rollout.revision,
                 ", ".join(f"{name}:{v}={share:g}%" for v, share in rollout.policy.shares().items()))
        for version in list(plane.models.get(name, {})):
            if version not in rollout.policy.versions:
                task = asyncio.create_task(plane.retire(name, version))
                self.retiring.add(task)
                task.add_done_callback(self.retiring.discard)
