"""HTTP surfaces: API, health, metrics, and (later) broker webhooks and the admin."""
