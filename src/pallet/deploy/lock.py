"""A lock file from what the bundle needs: pallet's own requirements and the models' packages,
with everything they pull in, at the versions installed here. Not a dump of this environment."""

from __future__ import annotations

import importlib.metadata as metadata
import re

from packaging.requirements import Requirement

from pallet.errors import PalletError


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock(roots: dict[str, set[str]]) -> dict[str, str]:
    """Exact versions of `roots` ({distribution: extras}) and their dependencies, by canonical name."""
    pinned: dict[str, str] = {}
    pending = [(name, set(extras)) for name, extras in roots.items()]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        name, extras = pending.pop()
        key = (canonical(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PalletError(f"the bundle needs '{name}', which is not installed here; install it and build again") from None
        pinned[canonical(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, set(requirement.extras)))
    return dict(sorted(pinned.items()))


def pallet_roots(model_packages: dict[str, str]) -> dict[str, set[str]]:
    """What a served bundle imports: pallet's runtime requirements (no extras) and each model's packages."""
    roots: dict[str, set[str]] = {}
    for text in metadata.distribution("pallet").requires or []:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue  # dev, bench: not for serving
        roots[requirement.name] = set(requirement.extras)
    for name in model_packages:
        roots.setdefault(name, set())
    return roots


def render(pinned: dict[str, str]) -> str:
    lines = ["# Exact versions for this bundle: pallet's requirements, the models' packages and what they need."]
    lines += [f"{name}=={version}" for name, version in pinned.items() if name != "pallet"]
    return "\n".join(lines) + "\n"
