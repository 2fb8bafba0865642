"""Keeps one server process in step with the rollout state in the SQL store.

Every poll it looks at the revisions of the names it serves. On a new revision it loads and warms
the versions the policy needs, then routes by the policy, then retires versions that left it once
their requests in flight are done. It also writes the figures it counted and judges running
canaries (any process may; one write per revision wins).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from pallet.errors import PalletError
from pallet.rollout.operations import Rollouts
from pallet.rollout.state import Rollout
from pallet.serve.dataplane import DataPlane

log = logging.getLogger("pallet.rollout")
PROCESS = f"pallet serve {socket.gethostname()}:{os.getpid()}"


class RolloutSync:
    def __init__(self, plane: DataPlane, rollouts: Rollouts, poll_seconds: float = 1.0):
        self.plane = plane
        self.rollouts = rollouts
        self.poll_seconds = poll_seconds
        self.names = plane.names()          # the names this server was started with
        self.failed: dict[str, int] = {}    # name -> a revision that could not be applied
        self.last_error = ""
        self.retiring: set[asyncio.Task] = set()

    @classmethod
    def open(cls, plane: DataPlane, poll_seconds: float) -> RolloutSync | None:
        """The sync for `plane`, or None (with a warning) when the store's database cannot hold rollouts."""
        try:
            return cls(plane, Rollouts(plane.store, actor=PROCESS), poll_seconds)
        except PalletError as e:
            log.warning("rollouts are off on this server: %s", e)
            return None

    async def run(self) -> None:
        while True:
            try:
                await self.step()
                self.last_error = ""
            except Exception as e:  # the database may be away for a moment: keep serving, say so once
                if str(e) != self.last_error:
                    log.error("rollout sync failed (serving on with the last policy): %s", e)
                    self.last_error = str(e)
            await asyncio.sleep(self.poll_seconds)

    async def step(self) -> None:
        loop = asyncio.get_running_loop()
        state = self.rollouts.state
        revisions = await loop.run_in_executor(None, state.revisions, self.names)
        for name, revision in revisions.items():
            applied = self.plane.rollouts.get(name)
            if (applied is None or applied.revision != revision) and self.failed.get(name) != revision:
                rollout = await loop.run_in_executor(None, state.get, name)
                if rollout is not None:
                    await self.apply(rollout)
        for name, rollout in list(self.plane.rollouts.items()):
            counted = dict(self.plane.figures.get(name, {}))
            await loop.run_in_executor(None, state.put_figures, name, rollout.revision, PROCESS, counted)
            if rollout.canary is not None:
                changed = await loop.run_in_executor(None, self.rollouts.tick, name)
                if changed is not None:
                    (event,) = await loop.run_in_executor(None, self.rollouts.history, name, 1)
                    log.info("canary of %s: %s: %s", name, event.action, event.reason)

    async def apply(self, rollout: Rollout) -> None:
        """Load and warm what the policy needs, route by it, then retire what it no longer names."""
        loop = asyncio.get_running_loop()
        name, plane = rollout.name, self.plane
        for version in rollout.policy.versions:
            if version not in plane.models.get(name, {}):
                try:
                    await loop.run_in_executor(None, plane.load, f"{name}:{version}")
                except PalletError as e:
                    self.failed[name] = rollout.revision
                    log.error("rollout of %s revision %d not applied: cannot load %s:%s: %s",
                              name, rollout.revision, name, version, e)
                    return
        plane.apply(rollout)
        log.info("%s routes by rollout revision %d: %s", name, rollout.revision,
                 ", ".join(f"{name}:{v}={share:g}%" for v, share in rollout.policy.shares().items()))
        for version in list(plane.models.get(name, {})):
            if version not in rollout.policy.versions:
                task = asyncio.create_task(plane.retire(name, version))
                self.retiring.add(task)
                task.add_done_callback(self.retiring.discard)
