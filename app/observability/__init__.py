"""Logs and metrics shared by the API and the workers (no protocol or storage code here)."""
