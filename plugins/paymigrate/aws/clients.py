"""boto3 clients for the library code that runs outside Airflow (CLI, Lambda, local bootstrap).

Inside Airflow the provider's hooks make the clients; this is the same thing for plain Python.
``AWS_ENDPOINT_URL`` (moto locally) and ``AWS_DEFAULT_REGION`` are honoured by boto3 itself.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

_RETRIES = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)


@cache
def _session(region: str | None) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    creds = {}
    if is_local(endpoint_url) and _session(region).get_credentials() is None:
        # moto accepts any key; boto3 refuses to sign without one.
        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return _session(region).client(service, endpoint_url=endpoint_url, config=_RETRIES, **creds)


def is_local(endpoint_url: str | None) -> bool:
    """Whether an endpoint is a stand-in on this machine (moto), never real AWS."""
    host = urlparse(endpoint_url or "").hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}
