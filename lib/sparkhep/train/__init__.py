"""Training: estimators from the job config, event weights, and the train job itself."""
