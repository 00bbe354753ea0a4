"""Metrics: the pass@k estimator, running statistics and the Prometheus exporter."""
