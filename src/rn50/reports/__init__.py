"""Reports: parity, profile, quantization and the work directory's report.md/html, as sections rendered by
one renderer (``render``)."""
