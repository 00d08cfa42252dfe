"""Mensa benchmarks: `mensa bench COMMAND`; each prints figures and the conditions."""
