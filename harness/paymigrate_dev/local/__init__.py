"""Local stand-ins for the AWS side: two PostgreSQL clusters, PgBouncer and a moto server.

Everything listens on 127.0.0.1 only and runs as an unprivileged user, even when started as root.
"""
