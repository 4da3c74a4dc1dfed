"""Evaluation: per-tag scores, confidence intervals over runs and experiments, the evaluate stage's files
and figures, and paper mode's comparison of architectures."""
