"""The nvme device pack (data file: pack.toml)."""
