"""Helpers shared by the dashboard's pages: the runs/report context, cached loaders and small widgets."""
