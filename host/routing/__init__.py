"""Inbound routing (SPEC R1-R6) and, later, outbound routes (O2)."""
