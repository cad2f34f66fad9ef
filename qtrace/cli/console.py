"""The two consoles of the CLI: ``console`` for results (stdout), ``err_console`` for the rest.

Library code never prints; it logs. Only ``qtrace.cli`` imports these.
"""

from rich.console import Console

__all__ = ["console", "err_console"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
