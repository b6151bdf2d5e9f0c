"""Operator commands (run from a checkout): `python -m ops.usage_report`."""
