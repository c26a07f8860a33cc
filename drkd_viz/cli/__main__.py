"""``python -m drkd_viz.cli``."""

from drkd_viz.cli import main

main()
