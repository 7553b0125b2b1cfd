"""The migration itself, apart from any orchestrator: the lock's states and moves
(:mod:`~paymigrate.migration.lock`) and the service that runs the phases
(:mod:`~paymigrate.migration.service`). Airflow's operators, the CLI and the Lambda call it."""
