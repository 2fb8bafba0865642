"""The one grammar for durations and sizes that every flag, file and page uses."""

import pytest

from pallet.errors import PalletError
from pallet.units import format_duration, format_ms, format_size, parse_duration, parse_size


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), ("1d", 86400),
    ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1.5h", 5400), (".5s", 0.5),
    ("1h30m", 5400), ("1d2h", 93600), ("1m30s500ms", 90.5), ("1h 30m", 5400), (" 2M ", 120),
    ("0s", 0), ("0", 0), ("24", 24), ("2.5", 2.5), (3, 3.0), (0.25, 0.25),
])
def test_durations_in_every_unit_and_combination(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "h", "1x", "-1h", "-5", "1h-30m", "ms", "1.2.3s", "nan", "inf",
                                  "10 seconds", "5mm"])
def test_what_is_not_a_duration_says_how_to_write_one(text):
    with pytest.raises(PalletError, match=r"is not a duration; write e\.g\. 500ms, 10s, 5m, 1h or 1d"):
        parse_duration(text)


def test_positive_durations_refuse_zero():
    assert parse_duration("500ms", positive=True) == 0.5
    for zero in ("0s", "0", 0):
        with pytest.raises(PalletError, match="duration must be more than zero"):
            parse_duration(zero, positive=True)


@pytest.mark.parametrize("text, size", [("2000000", 2_000_000), (1234, 1234), ("2MB", 2_000_000),
                                        ("1.5 MiB", 1572864), ("300KiB", 307200), ("20kb", 20_000),
                                        ("1GB", 10**9), ("2 GiB", 2 * 2**30), ("512B", 512)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "", "12XB", "-3MB", "1.2.3KB"])
def test_what_is_not_a_size_says_how_to_write_one(text):
    with pytest.raises(PalletError, match="is not a size: write bytes or a number with B, KB"):
        parse_size(text)


@pytest.mark.parametrize("size, text", [(0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                        (1536, "1.5 KiB"), (20 * 2**20, "20.0 MiB"), (3 * 2**30, "3.0 GiB"),
                                        (5000 * 2**30, "5000.0 GiB")])
def test_sizes_as_people_read_them(size, text):
    assert format_size(size) == text


def test_a_formatted_size_reads_back_to_about_the_same_bytes():
    for size in (700, 5000, 3 * 2**20 + 12345, 7 * 2**30):
        assert parse_size(format_size(size)) == pytest.approx(size, rel=0.05)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.5, "500ms"), (1, "1s"), (1.25, "1s250ms"), (90, "1m30s"), (300, "5m"), (3600, "1h"),
    (5400, "1h30m"), (86400, "1d"), (93600, "1d2h"), (3661.5, "1h1m1s500ms"), (0.0004, "0s"),
])
def test_durations_are_written_in_the_grammar_they_are_read_in(seconds, text):
    assert format_duration(seconds) == text


def test_a_written_duration_reads_back_to_the_same_seconds():
    for seconds in (0, 0.001, 0.5, 1, 59, 60, 61, 90, 299.999, 300, 3599, 3600, 3661.5, 86399, 93600, 604800,
                    1234567.891):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)
    for milliseconds in range(0, 200_000, 997):
        assert parse_duration(format_duration(milliseconds / 1000)) == pytest.approx(milliseconds / 1000, abs=1e-9)


@pytest.mark.parametrize("seconds, text", [
    (0.5, "500ms"), (1.2346, "1s235ms"), (119.6, "2m"), (300.4, "5m"), (5321.4, "1h29m"), (3599.7, "1h"),
    (93600, "1d2h"), (93599, "1d2h"),
])
def test_measured_durations_keep_their_two_largest_parts(seconds, text):
    assert format_duration(seconds, rounded=True) == text


def test_latencies_print_in_milliseconds_with_two_decimals():
    assert format_ms(3.456) == "3.46 ms"
    assert format_ms(0) == "0.00 ms"
    assert format_ms(1234.5) == "1234.50 ms"
