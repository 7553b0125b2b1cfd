"""The routers: each a PgBouncer in front of the writer (:mod:`.pgbouncer`: its admin console and
route file) with the route agent beside it (:mod:`.agent`), the agent's signed client
(:mod:`.client`), the switch's parallel steps over every router (:mod:`.fleet`) and who may use
which route (:mod:`.access`).

The switch never writes a PgBouncer's ``[databases]`` file: the agent on that host owns it and
changes it only when an authenticated call names a fence generation at least as new as the last
one it obeyed, and only while that router holds its clients (``PAUSE``).
"""
