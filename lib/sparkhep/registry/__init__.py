"""MLflow: where runs are tracked, how models are logged, registered and aliased."""
