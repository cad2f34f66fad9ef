"""``python -m qtrace``: the same CLI as the ``qtrace`` console script."""

from qtrace.cli.app import main

main()
