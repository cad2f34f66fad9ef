#!/bin/bash
# Stage "trace agent": gdbserver and its in-process agent (/usr/lib/libinproctrace.so, Debian
# package gdbserver), for `qtrace capture --collector fast` (fast tracepoints; ../shared notes
# in ENVIRONMENT.md, "GDB fast tracepoints"). Runs in the last stage, after the linux modules,
# from the compiled QEMU image (--network host: one package download), so adding it rebuilds
# only that stage and never recompiles QEMU (qtrace/image/builder.py).
# Usage: install-trace-agent.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

echo "==> stage: trace agent"
if ! apt-get install -y -q --no-install-recommends gdbserver; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends gdbserver
fi
test -x /usr/bin/gdbserver
test -f /usr/lib/libinproctrace.so
gdbserver --version | head -n1
apt-get clean
echo "==> done"
