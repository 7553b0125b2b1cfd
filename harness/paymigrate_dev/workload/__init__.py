"""A payment write workload whose own ledger of committed transactions proves nothing was lost.

``Workload`` runs client threads in this process; ``start_background`` / ``stop_background``
run it as a detached process; ``report`` checks a database against the ledger.
"""

from paymigrate_dev.workload.background import start_background, stop_background
from paymigrate_dev.workload.report import WorkloadReport, report
from paymigrate_dev.workload.runner import Workload, WorkloadStats

__all__ = ["Workload", "WorkloadReport", "WorkloadStats", "report", "start_background",
           "stop_background"]
