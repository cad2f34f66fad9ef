"""The qtrace collector package (runs inside gdb; standard library and ``gdb`` only).

It never imports the host-side ``qtrace`` package: gdb's Python is another interpreter.
"""
