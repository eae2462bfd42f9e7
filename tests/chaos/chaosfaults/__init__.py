"""Faults for tests/chaos, packaged as a user workload is (``workload.name: chaosfaults.workload``)."""
