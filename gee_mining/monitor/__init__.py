"""Monitoring across years: footprints of known mines and new candidates (see ``gee_mining.monitor.core``)."""

from gee_mining.monitor.core import (
    Candidate,
    MonitorRegion,
    MonitorResult,
    MonitorSpec,
    run_monitor,
    year_composites,
)

__all__ = ["Candidate", "MonitorRegion", "MonitorResult", "MonitorSpec", "run_monitor", "year_composites"]
