"""Routing over several PgBouncers: the route agent beside each one (:mod:`.agent`), its signed
client (:mod:`.client`) and the switch's parallel steps over every router (:mod:`.fleet`).

The switch never writes a PgBouncer's ``[databases]`` file: the agent on that host owns it and
changes it only when an authenticated call names a fence generation at least as new as the last
one it obeyed, and only while that router holds its clients (``PAUSE``).
"""
