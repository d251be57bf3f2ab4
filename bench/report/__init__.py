"""``bench report``: a static HTML report (tables, bar charts with bootstrap intervals, training
curves, the run list) built from the results store alone."""

from bench.report.build import build_report

__all__ = ["build_report"]
