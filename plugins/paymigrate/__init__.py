"""paymigrate: zero-downtime migration of a PostgreSQL payment database to Aurora PostgreSQL.

The package is shared by the Airflow DAGs, the Lambda functions, the command line and the local
stand-ins. Only the ``paymigrate.airflow`` subpackage imports Airflow.
"""

__version__ = "0.1.0"
