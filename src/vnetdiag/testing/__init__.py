"""pytest fixtures for tests that need real lab networks (loaded as a plugin)."""
