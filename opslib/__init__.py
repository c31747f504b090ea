"""opslib: the library behind the manuscript platform's runbook notebooks."""
