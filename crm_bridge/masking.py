"""Phone numbers in log lines are masked: enough to tell two calls apart, no more."""

from __future__ import annotations


def mask_phone(phone: str) -> str:
    """``+79001234567`` → ``+7900***4567``; anything of 9 characters or fewer → ``***``."""
    return phone[:5] + "***" + phone[-4:] if len(phone) > 9 else "***"
