"""Built-in method plugins; each registers itself once, in pyproject.toml's ``bench.methods`` group."""
