"""The AWS side: what infra creates and the code on both sides of it reads.

- :mod:`.contract`: every parameter under ``/migration/{env}/`` (Parameter Store), and
  :mod:`.names`: every resource's physical name. ``infra/``, the local bootstrap and the DAGs all
  use these two, so they cannot drift.
- :mod:`.checkpoints`: the migration's lock and phase documents in the checkpoints bucket.
- :mod:`.statemachines`: the Step Functions definitions that mirror the DAGs.
- :mod:`.migration_api` and :mod:`.authorizer`: the API Gateway routes and their TOKEN
  authorizer, as plain functions the Lambda handlers call.
- :mod:`.clients`: boto3 clients outside Airflow, re-exported here (``aws.client("s3")``).
"""

from paymigrate.aws.clients import client, is_local

__all__ = ["client", "is_local"]
