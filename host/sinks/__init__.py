"""Sinks: where inbound messages go (SPEC S1-S5). The shipped ones are plugins in
``plugins/sinks/``; :mod:`host.sinks.base` is what they build on."""
