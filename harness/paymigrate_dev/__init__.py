"""paymigrate_dev: the development harness around the ``paymigrate`` runtime package.

The local stand-ins (:mod:`.local`: PostgreSQL, PgBouncer with the route agent, moto, Airflow's
services), the demo's payment data (:mod:`.demo`), the payment workload that writes and reads
through the routers (:mod:`.workload`) and the ``paymigrate`` command line (:mod:`.cli`).

It imports the runtime; the runtime never imports it (``tests/unit/test_package_split.py``), and
neither Airflow's plugins folder (``plugins/``) nor the Lambda bundle carries it.
"""
