"""Edits of the configuration files by noun (host.config.editor runs them)."""
