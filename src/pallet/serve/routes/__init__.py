"""The HTTP routes beside the inference protocols: the pages, the dashboard, feedback and rollout admin.

They translate HTTP to the features below (`pallet.ui`, `pallet.rollout`); the features import no framework.
"""
