"""The HMAC-SHA256 signature of what smshost POSTs to others: the webhook sink's
deliveries and the status callbacks (host.callbacks), one scheme for both.

``X-Smshost-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 with the shared
secret of ``<t>.`` followed by the exact body bytes. A receiver recomputes it, compares
in constant time, and refuses a ``t`` far from its own clock (a replay).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Smshost-Signature"
DELIVERY_HEADER = "X-Smshost-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Smshost-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"
