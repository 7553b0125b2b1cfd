"""The cutover: everything between "the target is ready" and "the target is the writer".

- :mod:`.approval`: the figures an approver sees before the switch.
- :mod:`.read_canary`: the progressive shift of reads to the target, and its gate.
- :mod:`.freeze`: the fence that makes the old writer refuse writes.
- :mod:`.switch`: the write switch, run while every router holds its clients.
- :mod:`.after_switch`: the new writer validated against the old one, after ``RESUME``.

The routers themselves (PgBouncer and the route agent beside each) are :mod:`paymigrate.routing`.
Nothing is re-exported here: :mod:`.freeze` is imported by replication, which the switch imports.
"""
