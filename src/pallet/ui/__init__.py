"""The prototype pages, the dashboard and feedback capture."""
