"""Rollout operations, shared by the CLI, the admin HTTP API and Python scripts.

Each operation checks its versions in the store, then writes the next revision of the name's
rollout, moving the name's production alias to its stable version in the same transaction (the
two are one fact); every server serving the name picks it up within its poll interval, loads and
warms any new version before routing to it, and unloads versions that left once they are idle.
Tagging, untagging and removing versions go through here too: moving production is a promotion,
and a version that carries an alias or gets traffic is only removed when forced.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import replace
from typing import Any

from pallet.errors import NoRollout, PalletError, RolloutConflict, RolloutError
from pallet.rollout.canary import Thresholds, decide
from pallet.rollout.figures import VersionTraffic
from pallet.rollout.policy import Policy, Shadow
from pallet.rollout.state import Canary, Event, Rollout, RolloutChanged, RolloutState
from pallet.rollout.traffic import role_of, share, use
from pallet.store import ModelRef, ModelVersion, Store, default_store
from pallet.store.index import PRODUCTION
from pallet.units import format_duration


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Rollouts:
    """`Rollouts(store).promote("digits", to="digits:4")` and friends (`tag`, `remove`, `traffic`); `actor`
    says who acts, for history."""

    def __init__(self, store: Store | None = None, actor: str | None = None, state: RolloutState | None = None):
        self.store = store or default_store()
        self.state = state or RolloutState(self.store.index.engine)
        self.actor = actor or default_actor()

    # -- reading --------------------------------------------------------------------------------

    def get(self, name: str) -> Rollout | None:
        return self.state.get(name)

    def status(self, name: str) -> dict[str, Any]:
        """Versions, traffic shares, the canary's progress and the live figures of the current step."""
        rollout = self._require(name)
        counted = self.state.figures(name, rollout.revision)
        shares = rollout.policy.shares()
        shadow = rollout.policy.shadow
        versions = []
        for version in rollout.policy.versions:
            figures = counted.get(version)
            versions.append({"version": version, "share": round(shares.get(version, 0.0), 3),
                             "role": role_of(rollout, version),
                             **(figures or VersionTraffic()).summary()})
        doc = {"name": name, "mode": rollout.mode, "revision": rollout.revision, "updated": rollout.updated,
               "stable": rollout.stable, "previous": rollout.previous, "sticky_key": rollout.policy.sticky_key,
               "shadow": None if shadow is None else {"version": shadow.version, "fraction": shadow.fraction},
               "versions": versions, "canary": None}
        if rollout.canary:
            c = rollout.canary
            doc["canary"] = {"to": c.to, "steps": c.steps, "step": c.step + 1, "share": c.steps[c.step],
                             "step_seconds": c.step_seconds,
                             "step_left_seconds": round(max(0.0, c.step_started + c.step_seconds - time.time()), 1),
                             "thresholds": c.thresholds.to_dict(), "held": c.held}
        return doc

    def history(self, name: str, limit: int | None = None) -> list[Event]:
        events = self.state.history(name, limit)
        if not events:
            self._require(name)
        return events

    # -- changing -------------------------------------------------------------------------------

    def promote(self, name: str, to: str, *, reason: str = "", baseline: str | None = None) -> Rollout:
        """Send all of `name`'s traffic to `to` at once; `baseline` (else @production) is what a rollback
        returns to when the name has no rollout yet."""
        version = self._version(name, to)
        current = self.state.get(name)
        if current is not None and current.mode == "single" and current.stable == version:
            raise RolloutConflict(f"{name}:{version} already serves all of '{name}'")
        if current is None and baseline is None and self.store.index.alias(name, PRODUCTION) is None:
            base = Rollout(name, Policy.single(version), version)  # nothing known to roll back to
        else:
            base = current or self._first(name, baseline)
        previous = base.stable if base.stable != version else base.previous
        new = base.changed(policy=Policy.single(version), stable=version, previous=previous, canary=None,
                           mode="single")
        return self.state.write(new, self.actor, "promote", reason or f"promoted {name}:{version}")

    def rollback(self, name: str, *, reason: str = "") -> Rollout:
        """End a canary, split or shadow, back to the stable version; or, when nothing is in flight,
        go back to the version that was stable before the last promotion."""
        current = self._require(name)
        if current.mode != "single":
            new = _to_stable(current)
            why = f"back to {name}:{current.stable}"
        elif current.previous is not None:
            self._version(name, current.previous)
            new = current.changed(policy=Policy.single(current.previous), stable=current.previous,
                                  previous=current.stable, mode="single")
            why = f"back to {name}:{current.previous} from {name}:{current.stable}"
        else:
            raise RolloutConflict(f"'{name}' has nothing to roll back to: {name}:{current.stable} is its first version "
                              "under rollouts")
        return self.state.write(new, self.actor, "rollback", f"{reason}; {why}" if reason else why)

    def start(self, name: str, to: str, *, steps: list[float] = (5, 25, 50, 100), step_seconds: float = 300,
              thresholds: Thresholds | None = None, shadow_fraction: float = 0.2, sticky_key: str | None = None,
              baseline: str | None = None) -> Rollout:
        """A canary: `to` gets `steps[0]`% of the traffic, then more at each step while its figures hold up."""
        version = self._version(name, to)
        steps = _steps(steps)
        if step_seconds <= 0:
            raise RolloutError(f"--step-duration must be above 0, got {format_duration(step_seconds)}")
        if not 0 <= shadow_fraction <= 1:
            raise RolloutError(f"--shadow-fraction must be within 0..1, got {shadow_fraction}")
        thresholds = thresholds or Thresholds()
        if shadow_fraction == 0 and thresholds.min_agreement > 0:
            raise RolloutError("with --shadow-fraction 0 no answers are compared, so agreement cannot be judged; "
                               "set --min-agreement 0 as well, or shadow a share of the requests")
        current = self.state.get(name)
        if current is not None and current.mode == "canary":
            raise RolloutConflict(f"a canary of '{name}' to {name}:{current.canary.to} is running; "
                              f"roll it back or wait for it to finish first")
        base = current or self._first(name, baseline)
        if base.stable == version:
            raise RolloutConflict(f"{name}:{version} is already the stable version of '{name}'")
        canary = Canary(version, steps, 0, step_seconds, time.time(), thresholds, shadow_fraction)
        new = base.changed(policy=_canary_policy(base.stable, canary, sticky_key), canary=canary, mode="canary")
        return self.state.write(new, self.actor, "start",
                                f"canary to {name}:{version}: steps {_percent_list(steps)}, "
                                f"{format_duration(step_seconds)} each")

    def split(self, name: str, weights: dict[str, float], *, sticky_key: str | None = None) -> Rollout:
        """A fixed split (an A/B test): `{"digits:3": 90, "digits:4": 10}`."""
        if len(weights) < 1:
            raise RolloutError("a split needs at least one version=weight")
        by_version = {self._version(name, ref): float(w) for ref, w in weights.items()}
        policy = Policy(by_version, sticky_key)
        current = self.state.get(name)
        base = current or self._first(name, None)
        serving = policy.shares()
        stable = base.stable if base.stable in serving else max(serving, key=serving.get)
        new = base.changed(policy=policy, stable=stable, canary=None, mode="split")
        shares = ", ".join(f"{name}:{v}={s:g}%" for v, s in policy.shares().items())
        sticky = f", sticky by {sticky_key}" if sticky_key else ""
        return self.state.write(new, self.actor, "split", f"split {shares}{sticky}")

    def shadow(self, name: str, to: str, *, fraction: float = 1.0) -> Rollout:
        """Copies of a `fraction` of the live requests go to `to`; callers get the stable version's answers."""
        version = self._version(name, to)
        base = self.state.get(name) or self._first(name, None)
        if base.mode == "canary":
            raise RolloutConflict(f"a canary of '{name}' is running and already shadows its candidate; roll it back first")
        if base.stable == version:
            raise RolloutConflict(f"{name}:{version} is the version serving '{name}'; shadow another one")
        policy = Policy.single(base.stable)
        new = base.changed(policy=Policy(policy.weights, None, Shadow(version, fraction)), canary=None, mode="shadow")
        return self.state.write(new, self.actor, "shadow", f"shadow {fraction:.0%} of the requests to {name}:{version}")

    def tick(self, name: str, now: float | None = None) -> Rollout | None:
        """Judge a running canary on its figures: advance, hold or roll back. Any server may call it;
        one write per revision wins. Returns the new rollout when it changed."""
        rollout = self.state.get(name)
        if rollout is None or rollout.canary is None:
            return None
        canary, now = rollout.canary, time.time() if now is None else now
        actor = f"canary on {self.actor}"
        counted = self.state.figures(name, rollout.revision)
        decision = decide(counted.get(rollout.stable, VersionTraffic()), counted.get(canary.to, VersionTraffic()),
                          canary.thresholds, step_over=now >= canary.step_started + canary.step_seconds)
        step = f"step {canary.step + 1}/{len(canary.steps)} ({canary.steps[canary.step]:g}%)"
        try:
            if decision.action == "rollback":  # from the revision judged: a later change wins over this one
                return self.state.write(_to_stable(rollout), actor, "rollback", f"{step}: {decision.reason}; back to "
                                                                f"{name}:{rollout.stable}")
            if decision.action == "hold":
                if decision.reason == "step in progress" or canary.held:
                    return None  # a hold is recorded once per step; its figures keep counting
                return self.state.note(rollout.changed(canary=replace(canary, held=decision.reason)), actor, "hold",
                                       f"{step}: {decision.reason}")
            if canary.step + 1 >= len(canary.steps) - 1:  # the next step is 100%: the canary is done
                new = rollout.changed(policy=Policy.single(canary.to), stable=canary.to, previous=rollout.stable,
                                      canary=None, mode="single")
                return self.state.write(new, actor, "promote", f"{step}: {decision.reason}; canary complete, "
                                                               f"{name}:{canary.to} serves 100%")
            advanced = replace(canary, step=canary.step + 1, step_started=now, held="")
            new = rollout.changed(policy=_canary_policy(rollout.stable, advanced, rollout.policy.sticky_key),
                                  canary=advanced)
            return self.state.write(new, actor, "advance", f"{step}: {decision.reason}; now "
                                                           f"{advanced.steps[advanced.step]:g}% to {name}:{canary.to}")
        except RolloutChanged:
            return None

    # -- aliases and removal: the production alias is the stable version -------------------------

    def tag(self, ref: str | ModelRef, alias: str, *, reason: str = "") -> ModelVersion:
        """Point `alias` at the version `ref` names. Moving `production` is a promotion: that version then
        serves the name (running servers switch to it) and `rollback` returns to the one before."""
        if alias != PRODUCTION:
            return self.store.tag(ref, alias)
        version = self.store.resolve(ref)
        name, number = version.ref.name, str(version.ref.version)
        current = self.state.get(name)
        aliased = self.store.index.alias(name, PRODUCTION) == version.ref.version
        if aliased and (current is None or current.stable == number):
            return version  # already the version that serves
        if current is None and self.store.index.alias(name, PRODUCTION) is None:
            return self.store.tag(version.ref, alias)  # the name's first production: nothing serves by it yet
        why = reason or f"{name}@{PRODUCTION} moved to {name}:{number}"
        if current is not None and current.mode == "single" and current.stable == number:
            self.state.write(current, self.actor, "promote", why)  # the alias had drifted: point it back
        else:
            self.promote(name, number, reason=why)
        return self.store.resolve(version.ref)

    def traffic(self, name: str | None = None) -> dict[tuple[str, int], str]:
        """Each stored version's share of its name's traffic, as `models list` shows it ("90%", "10%
        (candidate)", "-" for a name with no rollout), by (name, version)."""
        current = self.state.current(name)
        return {(row.name, row.version): share(current.get(row.name), str(row.version))
                for row in self.store.index.versions(name)}

    def uses(self, ref: str | ModelRef) -> list[str]:
        """What keeps a version in use, in words: "carries aliases production, staging", then the traffic
        its rollout gives it ("gets 100% of the traffic of 'digits' (stable)"); empty when nothing does."""
        version = self.store.resolve(ref)
        aliases = version.aliases
        found = [f"carries alias{'es' if len(aliases) > 1 else ''} {', '.join(aliases)}"] if aliases else []
        traffic = use(self.state.get(version.ref.name), str(version.ref.version))
        return found + ([traffic] if traffic else [])

    def remove(self, ref: str | ModelRef, *, force: bool = False) -> ModelRef:
        """Remove a stored version; one that carries an alias or gets traffic only with `force`, which
        first takes it out of its name's rollout (`release`), so nothing routes to a missing version."""
        version = self.store.resolve(ref)
        if not force:
            self.check_unused(ref)
        self.release(version.ref)
        return self.store.remove(version.ref)

    def release(self, ref: ModelRef) -> None:
        """Before `ref` is removed: a canary, split or shadow member sends its traffic back to the stable
        version (a rollback); the stable version ends the rollout (the name then has no rollout and no
        production alias, and its history says why); the version a rollback would return to is forgotten."""
        name, number = ref.name, str(ref.version)
        rollout = self.state.get(name)
        if rollout is None:
            return
        removed = f"{name}:{number} was removed (pallet models rm --force)"
        if number == rollout.stable:
            self.state.end(rollout, self.actor, number, f"{removed}: it served '{name}', so its rollout ended and "
                                                       f"'{name}' has no @{PRODUCTION} until one is promoted")
            return
        previous = None if rollout.previous == number else rollout.previous
        if number in rollout.policy.versions or role_of(rollout, number):
            self.state.write(_to_stable(rollout).changed(previous=previous), self.actor, "rollback",
                             f"{removed}; back to {name}:{rollout.stable}")
        elif rollout.previous == number:
            self.state.note(rollout.changed(previous=None), self.actor, "forget",
                            f"{removed}; 'pallet rollout rollback {name}' has no earlier version to return to")

    def check_unused(self, ref: str | ModelRef) -> None:
        """Raise, naming its aliases and traffic and what to do about each, when the version `ref` names
        is in use."""
        version = self.store.resolve(ref)
        used = self.uses(version.ref)
        if used:
            named = f"{ref} is {version.ref}, which" if str(ref) != str(version.ref) else f"{version.ref}"
            how = " and ".join(self._freeing(version))
            raise PalletError(f"{named} {' and '.join(used)}; {how} first, or pass --force to remove it anyway")

    def _freeing(self, version: ModelVersion) -> list[str]:
        """What frees a version in use, for each thing that holds it: production (or the stable version)
        -> promote another; traffic in a canary, split or shadow -> roll it back; other aliases -> untag."""
        name, number = version.ref.name, str(version.ref.version)
        rollout = self.state.get(name)
        role = role_of(rollout, number) if rollout is not None else ""
        steps = []
        if PRODUCTION in version.aliases or role == "stable":
            steps.append(f"promote another version (pallet models tag {name}:N {PRODUCTION})")
        elif role:
            steps.append(f"roll the {rollout.mode} back (pallet rollout rollback {name}) or promote another version")
        others = [a for a in version.aliases if a != PRODUCTION]
        if others:
            steps.append(f"untag {'it' if len(others) == 1 else 'them'} "
                         f"({'; '.join(f'pallet models untag {name}@{a}' for a in others)})")
        return steps

    # -- helpers ------------------------------------------------------------------------------

    def _require(self, name: str) -> Rollout:
        rollout = self.state.get(name)
        if rollout is None:
            if self.store.index.latest(name) is None:
                self.store.resolve(name)  # "no model named 'x' in the store at ..."
            removed = self.store.index.removed_production(name)
            if removed is not None:
                raise NoRollout(f"'{name}' has no rollout: it ended when {name}:{removed}, the version serving it, "
                                f"was removed; promote one with pallet models tag {name}:N {PRODUCTION}")
            raise NoRollout(f"'{name}' has no rollout yet; start one with 'pallet rollout promote|start|split|"
                              f"shadow {name} ...'")
        return rollout

    def _version(self, name: str, ref: str) -> str:
        """The version number `ref` names, checked against the store; `ref` must be one of `name`'s."""
        parsed = ModelRef.parse(ref if (":" in ref or "@" in ref or not ref.isdigit()) else f"{name}:{ref}")
        if parsed.name != name:
            raise RolloutError(f"'{ref}' is a version of '{parsed.name}', not of '{name}'")
        return str(self.store.resolve(parsed).ref.version)

    def _first(self, name: str, baseline: str | None) -> Rollout:
        """The rollout of a name that has none yet: its baseline is `baseline`, else @production."""
        if baseline is None:
            if self.store.index.alias(name, PRODUCTION) is None:
                raise RolloutError(f"'{name}' has no rollout yet and no @production alias to start from; "
                                  f"name the version serving now with --from {name}:N")
            baseline = f"{name}@production"
        version = self._version(name, baseline)
        return Rollout(name, Policy.single(version), version)


def _to_stable(rollout: Rollout) -> Rollout:
    """The rollout with a canary, split or shadow ended: all traffic on its stable version."""
    return rollout.changed(policy=Policy.single(rollout.stable), canary=None, mode="single")


def _canary_policy(stable: str, canary: Canary, sticky_key: str | None) -> Policy:
    share = canary.steps[canary.step]
    shadow = Shadow(canary.to, canary.shadow_fraction) if canary.shadow_fraction > 0 else None
    return Policy({stable: 100.0 - share, canary.to: share}, sticky_key, shadow)


def _steps(steps) -> list[float]:
    steps = [float(s) for s in steps]
    if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
        raise RolloutError(f"--steps must be increasing percentages within 1..100, got {_percent_list(steps)}")
    return steps if steps[-1] == 100 else [*steps, 100.0]


def _percent_list(steps) -> str:
    return ",".join(f"{s:g}" for s in steps)
