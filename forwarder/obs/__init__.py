"""Observability at the edge of the data path: Prometheus metrics and structured logs."""
