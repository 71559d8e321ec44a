"""Experiment tracking. :class:`WandbTracker` logs a benchmark run to Weights & Biases;
wandb itself is imported only when a tracker starts, so nothing here is slow to import."""

from keisei_core.tracking.wandb_tracker import WandbTracker, artifact_name

__all__ = ["WandbTracker", "artifact_name"]
