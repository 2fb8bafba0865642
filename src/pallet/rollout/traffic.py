"""What a version gets from its name's rollout, in words: for `pallet models list|show` and for refusing
to remove a version that serves. Pure: reads a `Rollout`, no I/O."""

from __future__ import annotations

from pallet.rollout.state import Rollout


def share(rollout: Rollout | None, version: str) -> str:
    """The version's share of its name's traffic: "90%", "10% (candidate)", "0% (shadow copies of 20%)";
    "-" when the name has no rollout (no traffic policy: what serves is what each server was started on)."""
    if rollout is None:
        return "-"
    text = f"{rollout.policy.shares().get(version, 0.0):g}%"
    role = role_of(rollout, version)
    if role == "shadow":
        return f"{text} (shadow copies of {rollout.policy.shadow.fraction:.0%})"
    return f"{text} ({role})" if role in ("stable", "candidate") and rollout.mode != "single" else text


def use(rollout: Rollout | None, version: str) -> str | None:
    """How the rollout uses the version ("gets 10% of the traffic of 'digits' (candidate)"), for an error
    or a prompt; None when it does not."""
    if rollout is None:
        return None
    shares, name = rollout.policy.shares(), rollout.name
    role = role_of(rollout, version)
    if version in shares:
        return f"gets {shares[version]:g}% of the traffic of '{name}'" + (f" ({role})" if role != "serving" else "")
    if role == "shadow":
        return f"gets shadow copies of {rollout.policy.shadow.fraction:.0%} of the requests to '{name}'"
    if role in ("stable", "candidate"):
        return f"is the {role} version of the rollout of '{name}'"
    return None


def role_of(rollout: Rollout, version: str) -> str:
    """candidate, shadow, stable, serving (a split's other versions) or "" (none)."""
    if rollout.canary and version == rollout.canary.to:
        return "candidate"
    shares = rollout.policy.shares()
    if rollout.policy.shadow and version == rollout.policy.shadow.version and version not in shares:
        return "shadow"
    if version == rollout.stable:
        return "stable"
    return "serving" if version in shares else ""
