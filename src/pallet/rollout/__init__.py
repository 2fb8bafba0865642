"""Rollouts: traffic policies (weights, sticky keys, shadow), canary analysis, shared state.

    from pallet.rollout import Rollouts
    Rollouts().start("digits", to="digits:4", steps=[5, 25, 50, 100], step_seconds=300)
"""

from pallet.rollout.canary import Thresholds
from pallet.rollout.operations import Rollouts
from pallet.rollout.policy import Policy, Shadow

__all__ = ["Policy", "Rollouts", "Shadow", "Thresholds"]
