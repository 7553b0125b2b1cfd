"""SCRAM-SHA-256 verifiers (RFC 5802/7677, PostgreSQL's ``rolpassword`` format), so neither
PgBouncer's auth file nor a statement sent to a server holds a password in plain text.

PgBouncer logs in to the server with the key the client proved, which works only when its auth
file and the server hold the very same verifier (same salt): the stack makes one and sets it
on both servers and in the auth file.

>>> v = verifier("pw", salt=bytes(16))
>>> v.split("$")[1]
'4096:AAAAAAAAAAAAAAAAAAAAAA=='
>>> verifies(v, "pw"), verifies(v, "other"), verifies("md5abc", "pw")
(True, False, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
_FORMAT = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` for ``password``."""
    if not password.isascii():
        # SASLprep of ASCII is the identity; other text would need the full algorithm.
        raise ValueError("only ASCII passwords are supported (the stack generates them)")
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}$"
            f"{b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")


def verifies(stored: str | None, password: str) -> bool:
    """Whether the verifier ``stored`` was made from ``password``."""
    m = _FORMAT.match(stored or "")
    if not m or stored is None:
        return False
    expected = verifier(password, salt=base64.b64decode(m.group(2)), iterations=int(m.group(1)))
    return hmac.compare_digest(expected, stored)


def reuse_or_make(stored: str | None, password: str) -> str:
    """``stored`` when it verifies ``password`` (a running PgBouncer keeps working), else new."""
    return stored if stored is not None and verifies(stored, password) else verifier(password)
