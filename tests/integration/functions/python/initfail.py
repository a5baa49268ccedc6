"""Fixture: raises while being imported."""
raise RuntimeError("python init failed on purpose")
