"""The e1000 device pack (data files: pack.toml, registers.toml)."""
