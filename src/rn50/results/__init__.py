"""Result types of the run/compare engines and their JSON forms: below both the commands and the reports."""
