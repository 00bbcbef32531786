"""The daemon's HTTP API: operators, supervisors, webhooks, metrics."""
