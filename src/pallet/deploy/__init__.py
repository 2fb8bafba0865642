"""Packaging and deployment: bundles, their lock files, and the files each target needs."""
