"""The pipeline between parsing and the queue: a list of stages compiled per config."""

from __future__ import annotations

from forwarder.pipeline.pipeline import Pipeline
from forwarder.pipeline.stage import Refused, Stage, StageError, Work

__all__ = ["Pipeline", "Refused", "Stage", "StageError", "Work"]
