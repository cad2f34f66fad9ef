"""Finding things in a QEMU build: exit-case lines, device handlers, capturable devices."""
