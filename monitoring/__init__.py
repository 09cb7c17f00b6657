"""Metrics, tracing and (later) the prediction-log store. Imports no ML framework."""
