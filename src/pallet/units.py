"""Durations and sizes as people write them: the one grammar every flag, file and page uses."""

from __future__ import annotations

import re

from pallet.errors import PalletError

DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ms|s|m|h|d)")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | int, *, positive: bool = False) -> float:
    """Seconds in `500ms`, `10s`, `5m`, `1h`, `1d`, `1h30m`, or a plain number of seconds.

    `positive`: zero is refused too, for durations something must last (a benchmark level, say).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        compact = re.sub(r"\s+", "", str(text)).lower()
        try:
            seconds = float(compact)
        except ValueError:
            parts = DURATION_PART.findall(compact)
            if not parts or "".join(n + u for n, u in parts) != compact:
                raise PalletError(f"'{text}' is not a duration; write e.g. 500ms, 10s, 5m, 1h or 1d") from None
            seconds = sum(float(n) * SECONDS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise PalletError(f"'{text}' is not a duration; write e.g. 500ms, 10s, 5m, 1h or 1d")
    if positive and seconds == 0:
        raise PalletError(f"duration must be more than zero, got '{text}'")
    return seconds


SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str | int) -> int:
    """Bytes in `text`: 2000000, 2MB, 1.5 MiB, 300KiB."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).upper() not in SIZE_UNITS:
        raise PalletError(f"'{text}' is not a size: write bytes or a number with B, KB, MB, GB, KiB, MiB or GiB")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])


def format_size(size: float) -> str:
    """`size` bytes as people read them: 512 B, 1.5 KiB, 20.0 MiB, 3.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


DURATION_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def format_duration(seconds: float, *, rounded: bool = False) -> str:
    """`seconds` in the grammar `parse_duration` reads, largest units first: 500ms, 1m30s, 5m, 1h, 1d2h.

    Exact to the millisecond, so `parse_duration(format_duration(x)) == x` for whole milliseconds.
    `rounded`: keep only the two largest parts, the second rounded (1h28m for 5321.4 s), for times
    measured rather than configured.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds, rounded=rounded)
    left = round(seconds * 1000)
    if rounded:
        sizes = [size for _, size in DURATION_UNITS]
        first = next((i for i, size in enumerate(sizes) if left >= size), len(sizes) - 1)
        step = sizes[min(first + 1, len(sizes) - 1)]
        left = round(left / step) * step
    parts = []
    for unit, size in DURATION_UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_ms(milliseconds: float) -> str:
    """A latency as every command prints it: `3.46 ms`."""
    return f"{milliseconds:.2f} ms"
