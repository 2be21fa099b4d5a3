"""Shared helpers of the test suite: real processes (procs), the service under test (service),
free uids (uids), in-memory snapshots (snapshots), prepared procfs trees (proctree) and csf's
real-world files (realworld)."""
