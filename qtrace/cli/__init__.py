"""The ``qtrace`` command line: one typer app, one module per command (see ``app.py``)."""
