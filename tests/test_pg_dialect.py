"""host.pg.dialect: SQLite's SQL as smshost writes it, in PostgreSQL's dialect."""

from __future__ import annotations

from host.pg.dialect import translate


def test_pgout_is_a_parameter_is_null_safe_equality() -> None:
    """``x is ?`` (SQLite: equal, or both null) has no PostgreSQL form with a parameter;
    ``is not distinct from`` means the same (the consolidation's ``m.local is ?``)."""
    assert translate("select 1 from m where local is ? and remote is not ?") == (
        "select 1 from m where local is not distinct from %s "
        "and remote is distinct from %s")
    assert translate("select 1 from m where local is :local") == (
        "select 1 from m where local is not distinct from %(local)s")


def test_pgout_is_null_and_literals_stay() -> None:
    assert translate("select 1 from m where a is null and b is not null and c = 'is ?'") \
        == "select 1 from m where a is null and b is not null and c = 'is ?'"
