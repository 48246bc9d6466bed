"""Evaluation: datasets, metrics and runners that measure quality and speed."""
