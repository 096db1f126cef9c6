"""Showing an address without revealing it: ``jane@example.org`` -> ``j***@example.org``."""

from __future__ import annotations


def mask_address(address: str) -> str:
    """Keep the first character of the local part (only if it has 3+) and the domain.

    The stars are always three, so the mask does not tell the local part's length; a local
    part of one or two characters is hidden whole, as its first character would give away
    half of it.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    keep = local[0] if len(local) >= 3 else ""
    return f"{keep}***@{domain}"
