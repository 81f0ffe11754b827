"""Exact RFC 3339 times, report validation, and database selection by URL or environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katib.api.errors import InvalidArgument
from katib.db.config import DatabaseConfig, config_from_env, parse_url, resolve_config
from katib.db.records import validate_report
from katib.db.store import open_store
from katib.db.testing import MariaDBServer, PostgresServer
from katib.db.timestamps import (
    MAX_TIME_US,
    ZERO_TIME_US,
    format_rfc3339,
    from_datetime,
    parse_rfc3339,
    to_datetime,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T10:00:00.5+02:00", "2024-01-01T08:00:00.5Z"),
        ("2024-01-01t08:00:00.500000z", "2024-01-01T08:00:00.5Z"),
        ("2024-01-01 08:00:00Z", "2024-01-01T08:00:00Z"),
        ("2024-01-01T08:00:00.123456789Z", "2024-01-01T08:00:00.123456Z"),
        ("2023-12-31T23:30:00-00:45", "2024-01-01T00:15:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_parse_and_format(text: str, expected: str) -> None:
    assert format_rfc3339(parse_rfc3339(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-01T08:00:00",  # no zone
        "2024-01-01",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T08:00:60Z",
        "2024-01-01T08:00:00+24:00",
        "2024-01-01T08:00:00.Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        " 2024-01-01T08:00:00Z",
        "1704096000",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
        ),
    )
)
def test_round_trip_preserves_instant_and_order(moment: datetime) -> None:
    time_us = from_datetime(moment)
    assert to_datetime(time_us) == moment
    assert parse_rfc3339(format_rfc3339(time_us)) == time_us
    assert parse_rfc3339(moment.isoformat()) == time_us
    assert ZERO_TIME_US < time_us < MAX_TIME_US


def test_validate_report_lists_every_problem() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_report("t", [("x", "", "1"), ("", "ok", "\x00"), ("", "ok", "fine")])
    assert caught.value.problems == [
        "observation_log.metric_logs[0]: metric.name is empty",
        "observation_log.metric_logs[0]: time_stamp: timestamp 'x' is not RFC 3339 "
        "(expected e.g. 2024-01-01T08:00:00.5Z or 2024-01-01T10:00:00+02:00)",
        "observation_log.metric_logs[1]: metric.value contains a NUL character",
    ]
    with pytest.raises(InvalidArgument, match="and 10 more problems"):
        validate_report("t", [("bad", "m", "v")] * 30)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///obs.db", DatabaseConfig("sqlite", path="obs.db")),
        ("sqlite:////tmp/obs.db", DatabaseConfig("sqlite", path="/tmp/obs.db")),
        ("results/obs.db", DatabaseConfig("sqlite", path="results/obs.db")),
        (
            "postgresql://katib:p%40ss@db.example:6543/katib?sslmode=require",
            DatabaseConfig(
                "postgresql", host="db.example", port=6543, user="katib", password="p@ss",
                database="katib", options={"sslmode": "require"},
            ),
        ),
        (
            "postgres://u@h/d",
            DatabaseConfig("postgresql", host="h", port=5432, user="u", database="d"),
        ),
        (
            "mysql://root:pw@katib-mysql/katib",
            DatabaseConfig(
                "mysql", host="katib-mysql", port=3306, user="root", password="pw",
                database="katib",
            ),
        ),
        ("mariadb://u@h:1/d", DatabaseConfig("mysql", host="h", port=1, user="u", database="d")),
    ],
)  # fmt: skip
def test_parse_url(url: str, expected: DatabaseConfig) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["", "redis://h/0", "sqlite://", "sqlite:///:memory:", "postgresql://h", "mysql://h/d?ssl=1"],
)
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_password_is_not_in_the_description() -> None:
    assert "secret" not in parse_url("postgresql://u:secret@h/d").redacted()
    assert "secret" not in repr(parse_url("mysql://u:secret@h/d"))


def test_katib_environment_defaults() -> None:
    assert config_from_env({}) is None
    assert config_from_env({"DB_NAME": "mysql"}) == DatabaseConfig(
        "mysql", host="katib-mysql", port=3306, user="root", database="katib"
    )
    assert config_from_env({"DB_NAME": "postgres", "DB_PASSWORD": "pw"}) == DatabaseConfig(
        "postgresql", host="katib-postgres", port=5432, user="katib", password="pw",
        database="katib", options={"sslmode": "disable"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="DB_NAME"):
        config_from_env({"DB_NAME": "oracle"})
    with pytest.raises(ValueError, match="KATIB_MYSQL_DB_PORT"):
        config_from_env({"DB_NAME": "mysql", "KATIB_MYSQL_DB_PORT": "x"})
    assert resolve_config(None, {}).path == "katib-observations.db"
    assert resolve_config("sqlite:///a.db", {"DB_NAME": "mysql"}).path == "a.db"


def test_katib_environment_reaches_real_servers(
    postgres_server: PostgresServer, mariadb_server: MariaDBServer
) -> None:
    postgres_server.create_database("katib")
    mariadb_server.create_database("katib")
    environments = [
        {
            "DB_NAME": "postgres",
            "KATIB_POSTGRESQL_DB_HOST": "127.0.0.1",
            "KATIB_POSTGRESQL_DB_PORT": str(postgres_server.port),
        },
        {
            "DB_NAME": "mysql",
            "KATIB_MYSQL_DB_HOST": "127.0.0.1",
            "KATIB_MYSQL_DB_PORT": str(mariadb_server.port),
        },
    ]
    for environ in environments:
        config = config_from_env(environ)
        assert config is not None
        with open_store(config, connect_timeout=10) as store:
            store.ping()
            assert store.schema_version() == 2


def test_connect_gives_up_after_the_timeout() -> None:
    from katib.api.errors import Unavailable
    from katib.db.testing import free_port

    with pytest.raises(Unavailable, match="cannot connect"):
        open_store(f"postgresql://u@127.0.0.1:{free_port()}/d", connect_timeout=0.5)
