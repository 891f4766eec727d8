"""Benchmarks of edge_infer_ros: hop latency, whole-pipeline suite, monitoring overhead."""
