"""The prototype pages, the dashboard and feedback capture: static files and what they show."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
