"""Credentials become a DSN in one place and never show in a repr, str or error."""

from __future__ import annotations

import psycopg2
import pytest

from paymigrate.db import Endpoint, connect, redact


def test_password_hidden_everywhere_but_dsn():
    ep = Endpoint("db.internal", 5432, "payments", "app", "s3cr3t-'x")
    assert "s3cr3t" not in repr(ep) and "s3cr3t" not in str(ep) and "s3cr3t" not in ep.safe()
    assert "password='s3cr3t-\\'x'" in ep.dsn()
    assert "s3cr3t" not in redact(ep.dsn())


def test_redact_uri_and_keyword_forms():
    assert redact("postgresql://u:pw@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact("host=h password=abc user=u") == "host=h password=*** user=u"


def test_from_secret_names_what_is_missing():
    ep = Endpoint.from_secret('{"host":"h","port":5432,"username":"u","password":"p","dbname":"d"}')
    assert (ep.host, ep.port, ep.dbname, ep.user) == ("h", 5432, "d", "u")
    with pytest.raises(ValueError, match="lacks password"):
        Endpoint.from_secret({"host": "h", "port": 1, "username": "u"})
    with pytest.raises(ValueError, match="port 0 is outside"):
        Endpoint("h", 0, "d", "u")


def test_connection_error_does_not_echo_the_password():
    ep = Endpoint("127.0.0.1", 1, "d", "u", "hunter2-secret")
    with pytest.raises(psycopg2.OperationalError) as err:
        connect(ep)
    assert "hunter2" not in str(err.value)
