"""Result types of evaluation (parity, profile, load test, tune) and their JSON forms: below both the commands
and the reports."""
