"""Calibration ranges, one table per (model, image set, method), and Q/DQ emission per target."""
