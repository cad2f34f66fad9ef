"""The e1000e device pack (data files: pack.toml, registers.toml)."""
