"""HTTP endpoints of the master."""
