"""drkd_viz: teach, run and analyse Dual Relation Knowledge Distillation for object detection."""

__version__ = "0.1.0"
