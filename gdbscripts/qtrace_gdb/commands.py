"""'qtrace' -- the gdb command the host drives over MI.

Subcommands: ``setup CONFIG``, ``discover``, ``on-stop``, ``finish STATUS [REASON...]``,
``status``, ``symbolize STACKS.json SOURCE_ROOT``, ``threads``.
Each prints one line ``qtrace-reply: {json}`` so the host reads a structured answer
from MI's console stream instead of scraping text.
"""

import json

import gdb

from qtrace_gdb.contract import ConfigError, check_status, load_config
from qtrace_gdb.discovery import DiscoveryError
from qtrace_gdb.session import Session
from qtrace_gdb.symbolize import symbolize
from qtrace_gdb.thread_list import thread_stacks

REPLY_PREFIX = "qtrace-reply: "
_session = None


def _reply(payload):
    gdb.write(REPLY_PREFIX + json.dumps(payload, separators=(",", ":")) + "\n")


class QtraceCommand(gdb.Command):
    """qtrace: QEMU device-access collector (setup, on-stop, finish, status)."""

    def __init__(self):
        super().__init__("qtrace", gdb.COMMAND_USER, prefix=True)


class SetupCommand(gdb.Command):
    """Usage: qtrace setup CONFIG.json -- create the collectors described by the host."""

    def __init__(self):
        super().__init__("qtrace setup", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        global _session
        argv = gdb.string_to_argv(argument)
        if len(argv) != 1:
            raise gdb.GdbError(self.__doc__)
        try:
            config = load_config(argv[0])
        except ConfigError as exc:
            raise gdb.GdbError("qtrace setup: %s" % exc)
        _session = Session(config)
        _reply(_session.setup())


class DiscoverCommand(gdb.Command):
    """Usage: qtrace discover -- at the vm_start stop: read the device's regions, break on them."""

    def __init__(self):
        super().__init__("qtrace discover", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        try:
            _reply(_require().discover())
        except (DiscoveryError, gdb.error, gdb.MemoryError) as exc:
            raise gdb.GdbError("qtrace discover: %s" % exc)


class OnStopCommand(gdb.Command):
    """Usage: qtrace on-stop -- act on the stop a collector asked for; replies its reason."""

    def __init__(self):
        super().__init__("qtrace on-stop", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        _reply({"reason": _require().on_stop()})


class FinishCommand(gdb.Command):
    """Usage: qtrace finish STATUS [REASON...] -- write the end record and stop collecting."""

    def __init__(self):
        super().__init__("qtrace finish", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        argv = gdb.string_to_argv(argument)
        if not argv:
            raise gdb.GdbError(self.__doc__)
        try:
            status = check_status(argv[0])
        except ConfigError as exc:  # refused before anything is written: the host closes the trace
            raise gdb.GdbError("qtrace finish: %s" % exc)
        session = _require()
        session.finish(status, " ".join(argv[1:]) or None)
        _reply(session.status())


class StatusCommand(gdb.Command):
    """Usage: qtrace status -- counters of the running capture as JSON."""

    def __init__(self):
        super().__init__("qtrace status", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        _reply(_require().status())


class SymbolizeCommand(gdb.Command):
    """Usage: qtrace symbolize STACKS.json SOURCE_ROOT -- frames for lists of addresses."""

    def __init__(self):
        super().__init__("qtrace symbolize", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        argv = gdb.string_to_argv(argument)
        if len(argv) != 2:
            raise gdb.GdbError(self.__doc__)
        with open(argv[0], encoding="utf-8") as handle:
            stacks = [[int(pc) for pc in pcs] for pcs in json.load(handle)]
        _reply({"stacks": symbolize(stacks, argv[1])})


class ThreadsCommand(gdb.Command):
    """Usage: qtrace threads -- every thread's name and stack pointer, at a stop."""

    def __init__(self):
        super().__init__("qtrace threads", gdb.COMMAND_USER)

    def invoke(self, argument, from_tty):
        _reply({"threads": thread_stacks()})


def _require():
    if _session is None:
        raise gdb.GdbError("qtrace: run 'qtrace setup CONFIG' first")
    return _session


def register():
    QtraceCommand()
    SetupCommand()
    DiscoverCommand()
    OnStopCommand()
    FinishCommand()
    StatusCommand()
    SymbolizeCommand()
    ThreadsCommand()
