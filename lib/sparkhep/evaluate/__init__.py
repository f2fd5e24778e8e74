"""Evaluation the way physicists read it: weighted ROC, efficiencies, overtraining checks."""
