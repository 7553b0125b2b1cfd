"""What a router host runs, as plain text: the user data of the router tier's launch template.

No Pulumi here. Each host runs PgBouncer (transaction pooling) and the package's route agent.
The admin console is reachable over loopback only (PgBouncer's hba file rejects the ``pgbouncer``
database from any other address): the agent on the same host is the only way in from the
network, and its port is open to the orchestration side alone. The first route a host serves is
the contract's ``database/active-writer``, read at boot, so a host that replaces a failed one
after the cutover never sends writes back to the old writer; one that boots in the middle of a
switch points at the fenced source and its writes fail instead of landing there. Beside it, the
read-only route (``payments_ro``) to the target, which only the ``reader-db`` role may use
(:mod:`paymigrate.routing.access`).

>>> text = user_data(env="dev", region="eu-west-1", package="paymigrate==0.1.0",
...     secret_arns={"router-admin": "arn:a", "app-db": "arn:b", "reader-db": "arn:c"}, log_group="/g",
...     agent_port=6433)
>>> "host pgbouncer all 0.0.0.0/0 reject" in text, text.startswith("#!/bin/bash")
(True, True)
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping

from paymigrate.routing.access import hba_rules

PGBOUNCER_PORT = 6432
# Owned by the route agent (paymigrate.routing.agent): the switch never writes it itself.
ROUTES_FILE = "/etc/pgbouncer/databases.ini"
AGENT_CONFIG = "/etc/pgbouncer/agent.json"
ADMIN_ENDPOINT = f"127.0.0.1:{PGBOUNCER_PORT}"
# The public SSM parameter of Canonical's current Ubuntu 24.04 image (pgbouncer is a Debian
# package there); the launch template resolves it when an instance launches.
IMAGE = ("resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/"
         "ebs-gp3/ami-id")
RDS_CA_BUNDLE = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
CLOUDWATCH_AGENT = ("https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/amd64/latest/"
                    "amazon-cloudwatch-agent.deb")
AGENT_MODULE = "paymigrate.routing.agent"
LOG_FILES = {"pgbouncer": "/var/log/postgresql/pgbouncer.log",
             "route-agent": "/var/log/paymigrate/route-agent.log"}
SECRETS = ("router-admin", "app-db", "reader-db")
READ_ONLY_USER_FILE = "/etc/pgbouncer/read_only_user"

# The admin console from loopback only (the route agent on this host), the read-only route for the
# read-only role only. The role's name is the reader-db secret's, written at boot; the security
# groups, not this file, say which addresses reach 6432.
HBA = hba_rules(reader=f"$(cat {READ_ONLY_USER_FILE})", clients="0.0.0.0/0")

# Runs once at first boot, as root, with the package installed: credentials from Secrets
# Manager, the first route from the contract. Nothing secret reaches the console or a log.
BOOT_SCRIPT = """\
import json, os, sys, time
import boto3
from paymigrate.aws import contract
from paymigrate.routing.access import READ_ONLY_DATABASE
env, region, arns, etc, agent_port = (sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4],
                                      int(sys.argv[5]))
KEYS = ("database/active-writer", "database/production/endpoint", "database/migration/endpoint",
        "database/name", "router/database")
sm = boto3.client("secretsmanager", region_name=region)
users = {role: json.loads(sm.get_secret_value(SecretId=arn)["SecretString"]) for role, arn in arns.items()}
ssm = boto3.client("ssm", region_name=region)
for _ in range(60):  # the contract is written in the same deployment, after the tier
    try:
        cfg = contract.read_keys(ssm, env, KEYS)
        writer = cfg["database/active-writer"]
        break
    except Exception as exc:
        print("contract not readable yet:", type(exc).__name__, flush=True)
        time.sleep(10)
else:
    sys.exit("the contract under /migration/%s never became readable" % env)
side = "production" if writer == "source" else "migration"
host, port = cfg["database/%s/endpoint" % side].rsplit(":", 1)
os.umask(0o077)
with open(os.path.join(etc, "userlist.txt"), "w") as f:
    for u in users.values():
        f.write('"%s" "%s"\\n' % (u["username"], u["password"]))
with open(os.path.join(etc, "admin_users"), "w") as f:
    f.write(users["router-admin"]["username"])
with open(os.path.join(etc, "read_only_user"), "w") as f:
    f.write(users["reader-db"]["username"])
# The route agent: its key signs the switch's calls and logs it into this PgBouncer's console.
with open(os.path.join(etc, "router-admin.key"), "w") as f:
    f.write(users["router-admin"]["password"])
routes = os.path.join(etc, "databases.ini")
with open(os.path.join(etc, "agent.json"), "w") as f:
    json.dump({"listen": "0.0.0.0", "port": agent_port, "routes_file": routes,
               "admin": {"host": "127.0.0.1", "port": 6432, "user": users["router-admin"]["username"]},
               "key_file": os.path.join(etc, "router-admin.key")}, f)
if not os.path.exists(routes):  # a reboot keeps the route the agent last wrote
    target_host, target_port = cfg["database/migration/endpoint"].rsplit(":", 1)
    with open(routes, "w") as f:
        f.write("[databases]\\n%s = host=%s port=%s dbname=%s\\n%s = host=%s port=%s dbname=%s\\n"
                % (cfg["router/database"], host, port, cfg["database/name"],
                   READ_ONLY_DATABASE, target_host, target_port, cfg["database/name"]))
"""


def pgbouncer_ini(*, admin_user_file: str = "/etc/pgbouncer/admin_users") -> str:
    """PgBouncer's settings; ``admin_users`` is filled in at boot from the admin secret."""
    return f"""\
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = {PGBOUNCER_PORT}
unix_socket_dir = /var/run/postgresql
auth_type = hba
auth_hba_file = /etc/pgbouncer/pg_hba.conf
auth_file = /etc/pgbouncer/userlist.txt
admin_users = @ADMIN_USERS@
pool_mode = transaction
max_client_conn = 5000
default_pool_size = 50
server_tls_sslmode = verify-full
server_tls_ca_file = /etc/pgbouncer/rds-ca.pem
logfile = {LOG_FILES["pgbouncer"]}
%include {ROUTES_FILE}
""".replace("@ADMIN_USERS@", f"$(cat {admin_user_file})")


def cloudwatch_agent_config(log_group: str) -> dict:
    return {"logs": {"logs_collected": {"files": {"collect_list": [
        {"file_path": path, "log_group_name": log_group, "log_stream_name": f"{{instance_id}}/{role}"}
        for role, path in LOG_FILES.items()]}}}}


def agent_unit(*, env: str) -> str:
    """The agent's systemd unit; it listens where its config (written at boot) says."""
    return f"""\
[Unit]
Description=paymigrate route agent
After=pgbouncer.service
Requires=pgbouncer.service

[Service]
User=postgres
Environment=PAYMIGRATE_ENV={env}
ExecStart=/opt/paymigrate/bin/python -m {AGENT_MODULE} serve --config {AGENT_CONFIG}
Restart=always
StandardOutput=append:{LOG_FILES["route-agent"]}
StandardError=append:{LOG_FILES["route-agent"]}

[Install]
WantedBy=multi-user.target
"""


# A host that rebooted in the middle of a switch puts a route the switch never confirmed back
# before PgBouncer serves anything (the agent's recover).
PGBOUNCER_DROP_IN = f"""\
[Service]
ExecStartPre=/opt/paymigrate/bin/python -m {AGENT_MODULE} recover --config {AGENT_CONFIG}
"""


def user_data(*, env: str, region: str, package: str, secret_arns: Mapping[str, str],
              log_group: str, agent_port: int) -> str:
    """The cloud-init script of a router host. ``package`` is a pip requirement of the
    paymigrate wheel (installed without Airflow: the host needs boto3 and psycopg2 only)."""
    missing = sorted(set(SECRETS) - set(secret_arns))
    if missing:
        raise ValueError(f"router host secrets missing: {', '.join(missing)}")
    q = shlex.quote
    arns = json.dumps({role: secret_arns[role] for role in SECRETS})
    return f"""#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y pgbouncer python3-venv curl
curl -fsSL -o /tmp/amazon-cloudwatch-agent.deb {CLOUDWATCH_AGENT}
dpkg -i /tmp/amazon-cloudwatch-agent.deb
curl -fsSL -o /etc/pgbouncer/rds-ca.pem {RDS_CA_BUNDLE}
python3 -m venv /opt/paymigrate
/opt/paymigrate/bin/pip install --no-deps {q(package)}
/opt/paymigrate/bin/pip install boto3 psycopg2-binary
install -d -o postgres -g postgres -m 0750 /var/log/paymigrate
systemctl stop pgbouncer
/opt/paymigrate/bin/python - {q(env)} {q(region)} {q(arns)} /etc/pgbouncer {agent_port} <<'PY'
{BOOT_SCRIPT}PY
cat > /etc/pgbouncer/pg_hba.conf <<HBA
{HBA}HBA
cat > /etc/pgbouncer/pgbouncer.ini <<INI
{pgbouncer_ini()}INI
chown postgres:postgres /etc/pgbouncer/*
chmod 0600 /etc/pgbouncer/userlist.txt
cat > /etc/systemd/system/paymigrate-route-agent.service <<'UNIT'
{agent_unit(env=env)}UNIT
install -d /etc/systemd/system/pgbouncer.service.d
cat > /etc/systemd/system/pgbouncer.service.d/paymigrate-recover.conf <<'UNIT'
{PGBOUNCER_DROP_IN}UNIT
cat > /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json <<'CW'
{json.dumps(cloudwatch_agent_config(log_group), indent=2)}
CW
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \\
  -c file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json
systemctl daemon-reload
systemctl enable --now pgbouncer paymigrate-route-agent
"""
