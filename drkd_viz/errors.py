"""Errors meant for the person running the tool: the message says what is wrong and what to do.

The CLI prints them without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a bad request: the message is complete and actionable on its own."""


class DatasetError(UserError):
    """An annotation file or image that cannot be used as given."""


class DetectionsError(UserError):
    """A detections (COCO results) file that cannot be evaluated."""


class WeightsError(UserError):
    """A weights file that does not fit the model it is loaded into."""
