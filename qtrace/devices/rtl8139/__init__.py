"""The rtl8139 device pack (data files: pack.toml, registers.toml)."""
