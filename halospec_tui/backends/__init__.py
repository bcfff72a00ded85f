"""Inference backends: one module per server kind, plus the embedded engine."""
