"""Serving on Triton Inference Server: model repositories, a served rn50 runner, and load tests."""
