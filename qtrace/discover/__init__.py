"""Finding things in a QEMU build: the exit-case lines of kvm_cpu_exec, the capturable devices."""
