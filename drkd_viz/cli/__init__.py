"""The ``drkd-viz`` command line. Every verb has ``--help``; user errors print one clear message.

Commands by what they work on: :mod:`.data` (datasets, backbones), :mod:`.models` (one run or model),
:mod:`.pipeline` (a runs folder); :mod:`.entry` holds the app and the entry point, :mod:`.options` the choices."""

from drkd_viz.cli import data, models, pipeline  # noqa: F401  (registers the commands on app)
from drkd_viz.cli.entry import app, main
from drkd_viz.cli.options import Backbone, Backend, DatasetPreset, Device, PipelinePresetName, Split

__all__ = ["Backbone", "Backend", "DatasetPreset", "Device", "PipelinePresetName", "Split", "app", "main"]
