"""``twcore report``: tables and plots aggregated over the runs of one or more sweeps."""

from twcore.report.collect import RunRecord, collect_runs
from twcore.report.write import Report, write_report

__all__ = ["Report", "RunRecord", "collect_runs", "write_report"]
