"""paymigrate's Airflow provider: hooks, operators, sensors, callbacks and the UI plugin.

Only this subpackage imports Airflow; the library it calls does not.
"""
