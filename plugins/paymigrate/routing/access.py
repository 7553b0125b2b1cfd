"""Who a PgBouncer lets in, and to which of its databases: its hba file, the same on every router
(the local stand-ins, docker-compose and the hosts in AWS).

The read-only route (``payments_ro``, to the target) takes one role only, the read-only role,
and that role no other route. On the target that role may read every table and write none
(``pg_read_all_data``, no other grant). A write through the route is then refused by the
target's privileges, whatever the client does with ``SET default_transaction_read_only`` or
``BEGIN READ WRITE``: the route's own setting is not what stops it. The admin console
(``pgbouncer``) is reached from the router's host only, where its route agent runs.
"""

from __future__ import annotations

READ_ONLY_DATABASE = "payments_ro"  # the routers' read-only route, to the target

# What the read-only role is on the target (run by whoever makes the role: the local stack,
# the operator on Aurora): it reads every table, view and sequence, of today and of later
# schemas, and is granted nothing that writes. The setting only makes the error say so sooner.
READ_ONLY_GRANTS = ("GRANT pg_read_all_data TO {role}",
                    "ALTER ROLE {role} SET default_transaction_read_only = on")


def hba_rules(*, reader: str, clients: str, console: str = "127.0.0.1/32",
              method: str = "scram-sha-256") -> str:
    """PgBouncer's ``auth_hba_file`` (first matching line wins).

    >>> print(hba_rules(reader="payments_reader", clients="127.0.0.1/32"), end="")
    host pgbouncer all 127.0.0.1/32 scram-sha-256
    host pgbouncer all 0.0.0.0/0 reject
    host payments_ro payments_reader 127.0.0.1/32 scram-sha-256
    host payments_ro all 0.0.0.0/0 reject
    host all payments_reader 0.0.0.0/0 reject
    host all all 127.0.0.1/32 scram-sha-256
    """
    return "".join(f"{line}\n" for line in (
        f"host pgbouncer all {console} {method}",
        "host pgbouncer all 0.0.0.0/0 reject",
        f"host {READ_ONLY_DATABASE} {reader} {clients} {method}",
        f"host {READ_ONLY_DATABASE} all 0.0.0.0/0 reject",
        f"host all {reader} 0.0.0.0/0 reject",
        f"host all all {clients} {method}",
    ))
