"""qtrace: capture, annotate and verify how QEMU emulates a device.

The package is a pipeline (see DESIGN in the README): ``build`` makes a debug QEMU image,
``launch`` runs it under gdb, ``gdbscripts/`` collects inside gdb, ``trace`` is the file
format that joins both halves, and ``annotate``/``report``/``refemu``/``verify`` read traces.
"""

import logging

__all__ = ["__version__"]

__version__ = "0.1.0"

# A library stays quiet unless the application (our CLI) installs a handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())
