"""paymigrate: zero-downtime migration of a PostgreSQL payment database to Aurora PostgreSQL.

The runtime: what the Airflow DAGs, the Lambda functions and the router hosts run. Where a
change goes:

- :mod:`.migration`: the service beneath the DAGs, the CLI and the Lambda: phases, the lock.
- :mod:`.replication`: the engines (native logical replication, DMS) behind one interface.
- :mod:`.validation`: the comparison of source and target.
- :mod:`.cutover`: approval, the read canary, the fence, the write switch, the check after it.
- :mod:`.routing`: the routers (PgBouncer and the route agent on each host) and their clients.
- :mod:`.aws`: the contract, names, checkpoints, state machines, API and boto3 clients.
- :mod:`.provider`: the Airflow hooks, operators, sensors and UI plugin; the only Airflow import.
- basics shared by all: :mod:`.db`, :mod:`.errors`, :mod:`.inputs`, :mod:`.progress`,
  :mod:`.pgbin`, :mod:`.scope`.

The dev harness (local stand-ins, demo data, workload, CLI) is the package ``paymigrate_dev``
beside this one; nothing here imports it.
"""

__version__ = "0.1.0"
