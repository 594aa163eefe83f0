"""Evaluation: which runtime × artifact pairs to run, running them, comparing and measuring."""
