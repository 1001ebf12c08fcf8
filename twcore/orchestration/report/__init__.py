"""``twcore report``: tables and plots aggregated over the runs of one or more sweeps."""

from twcore.orchestration.report.collect import RunRecord, collect_runs
from twcore.orchestration.report.write import Report, write_report

__all__ = ["Report", "RunRecord", "collect_runs", "write_report"]
