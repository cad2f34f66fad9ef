"""Running a capture: the labelled container, gdb over MI, QEMU's command line, the watch."""
