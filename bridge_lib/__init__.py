"""Shared libraries of the services: no service, sandbox or tool is imported here (tests/test_layering.py)."""
