"""Benchmark folded vs unfolded vs ResNet across backends, devices and batch sizes, in one run."""
