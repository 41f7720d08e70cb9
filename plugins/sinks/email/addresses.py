"""Email addresses in the email sink's settings and route targets."""

from __future__ import annotations

import email.errors
import email.utils
from email.headerregistry import Address
from pathlib import Path

from .templates import template_problem


# -- addresses -------------------------------------------------------------------------

def parse_address(text: str) -> Address:
    """One bare address (``user@domain``); ``ValueError`` with a reason otherwise."""
    text = text.strip()
    try:
        address = Address(addr_spec=text)
    except (ValueError, email.errors.HeaderParseError):
        raise ValueError(f"{text!r} is not an email address (expected e.g. "
                         "ops@example.com)") from None
    if not address.username or not address.domain:
        raise ValueError(f"{text!r} is not an email address (expected e.g. ops@example.com)")
    return address


def parse_recipients(text: str) -> list[Address]:
    """A comma-separated list of addresses (may be empty)."""
    return [parse_address(item) for item in text.split(",") if item.strip()]


def recipients_problem(text: str) -> str | None:
    try:
        parse_recipients(text)
    except ValueError as exc:
        return str(exc)
    return None


def sender_problem(text: str) -> str | None:
    problem = template_problem(text)
    if problem:
        return problem
    name, addr = split_sender(text)
    if not addr or "@" not in addr:
        return (f"{text!r}: expected an address, optionally with a name: "
                '"sms@example.com" or "SMS {from} <sms@example.com>"')
    if "{" not in addr:
        try:
            parse_address(addr)
        except ValueError as exc:
            return str(exc)
    return None


def split_sender(text: str) -> tuple[str, str]:
    """``"SMS {from} <sms@example.com>"`` → (name template, address template)."""
    return email.utils.parseaddr(text)


def file_exists(value: str) -> str | None:
    return None if Path(value).is_file() else f"no such file: {value}"
