"""The debug-QEMU image: QEMU versions and their source, the staged build, its cache key.

Named for what it makes (``qtrace/qemu:<version>-debug``), not ``build``: that name is taken
by convention for build outputs (pytest's default ``norecursedirs`` skips it, and other
tools treat it as generated).
"""
