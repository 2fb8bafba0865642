"""URLs as they may be shown: a database's or a cache's address without its password."""

from __future__ import annotations


def redact(spec: str) -> str:
    """A URL (a database's, Redis') as it may be printed or logged: no password."""
    if "@" not in spec:  # no user part, so no password to hide
        return spec
    import sqlalchemy as sa  # its URL grammar is the one pallet's database URLs are read with

    try:
        url = sa.make_url(spec)
    except sa.exc.ArgumentError:
        return spec
    return url.render_as_string(hide_password=True) if url.password else spec
