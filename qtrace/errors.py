"""The one exception tree of qtrace.

Every error a user can cause or meet derives from :class:`QtraceError`, and each class
carries its exit code (``exit_code``): this tree is the one table of exit codes, and the CLI
(``qtrace.cli.app``) only reads it. No command sets an exit code of its own: a capture that
did not end ``ok`` is a :class:`CaptureFailed`, a doctor that found a problem a
:class:`DoctorFailed`, Ctrl-C or a terminating signal an :class:`Interrupted`. Foreign
exceptions (``ValueError`` from a parser, Docker's API errors) are wrapped where they leave a
stage, into one of these with a hint::

    QtraceError
     +-- EnvironmentProblem          something on the machine is missing (exit 3)
     |    +-- DockerUnavailable
     |    +-- KvmUnavailable
     |    +-- ImageMissing
     |    +-- DoctorFailed(failed)     ``qtrace doctor`` found a check that is not ok
     +-- UsageError                  the user asked for something that does not exist (exit 2)
     |    +-- UnknownQemuVersion
     |    +-- UnknownDevice
     +-- BuildError                  the QEMU image build failed (exit 1)
     +-- LaunchFailure               gdb/QEMU/container did not start (exit 1)
     +-- CaptureFailed(status, reason)
     |                               the capture ended with a status other than ok (exit 1)
     +-- DiscoveryError              the QEMU source is not shaped as discovery expects (exit 1)
     +-- GdbTimeout
     +-- CollectorError              the gdb-side collector reported a problem
     +-- TraceFormatError(path, line)
     +-- ReportError
     +-- VerifyMismatch(register, expected, actual, count)
     |                               the reference model disagrees with QEMU (exit 4)
     +-- Unimplemented(space, offset, name, reason)
     |                               an access reached a register the model does not model
     +-- StateError(state, required)
     +-- AbnormalShutdown
     +-- Interrupted(signum)         Ctrl-C or SIGTERM/SIGHUP, after cleaning up (exit 128 + signal:
                                     130, 143, 129)

:class:`SignalInterrupt` is not in the tree: it is the :class:`KeyboardInterrupt` the CLI
raises for SIGTERM/SIGHUP so every stage's Ctrl-C cleanup serves them too; the CLI turns
any KeyboardInterrupt into an :class:`Interrupted` once the cleanup is done.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "QtraceError",
    "EnvironmentProblem",
    "DockerUnavailable",
    "KvmUnavailable",
    "ImageMissing",
    "DoctorFailed",
    "UsageError",
    "UnknownQemuVersion",
    "UnknownDevice",
    "BuildError",
    "LaunchFailure",
    "QemuRefused",
    "CaptureFailed",
    "DiscoveryError",
    "GdbTimeout",
    "CollectorError",
    "TraceFormatError",
    "ReportError",
    "VerifyMismatch",
    "Unimplemented",
    "StateError",
    "AbnormalShutdown",
    "Interrupted",
    "SignalInterrupt",
]


class QtraceError(Exception):
    """Root of every qtrace error. ``hint`` tells the user what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class EnvironmentProblem(QtraceError):
    """A tool or device qtrace needs is missing or unusable on this machine."""

    exit_code = 3


class DockerUnavailable(EnvironmentProblem):
    """The Docker daemon cannot be reached."""


class KvmUnavailable(EnvironmentProblem):
    """``/dev/kvm`` is missing or cannot create a VM."""


class ImageMissing(EnvironmentProblem):
    """The debug QEMU image for the requested version has not been built."""


class DoctorFailed(EnvironmentProblem):
    """``qtrace doctor`` found checks that are not ok; each one's fix is in its table.

    Attributes:
        failed: The names of the checks that are not ok.
    """

    def __init__(self, failed: Sequence[str]) -> None:
        self.failed = list(failed)
        super().__init__(
            f"not ready for `qtrace capture` with KVM: {', '.join(self.failed)} not ok.",
            hint=(
                "Apply the fix shown for each check; a missing KVM alone still allows --accel tcg."
            ),
        )


class UsageError(QtraceError):
    """The user named something that does not exist."""

    exit_code = 2


class UnknownQemuVersion(UsageError):
    """The requested QEMU version is not one Debian's archive serves."""

    def __init__(self, requested: str, available: Sequence[str]) -> None:
        self.requested = requested
        self.available = list(available)
        listed = ", ".join(self.available) if self.available else "(none found)"
        super().__init__(
            f"QEMU version {requested!r} is not available from Debian's source packages. "
            f"Available versions: {listed}.",
            hint="Pass one of them with --qemu-version, or build a local tree with --source DIR.",
        )


class UnknownDevice(UsageError):
    """The device name is not a PCI device type this QEMU build knows."""

    def __init__(self, requested: str, closest: Sequence[str]) -> None:
        self.requested = requested
        self.closest = list(closest)
        near = ", ".join(self.closest) if self.closest else "none"
        super().__init__(
            f"Unknown device {requested!r}. Closest known device names: {near}.",
            hint="Run `qtrace devices` to list the PCI devices this QEMU build can capture.",
        )


class BuildError(QtraceError):
    """A stage of the QEMU image build failed; ``log_path`` holds the whole log."""

    def __init__(
        self,
        stage: str,
        log_path: Path | None,
        log_tail: Sequence[str],
        script_exit_code: int | None = None,
    ) -> None:
        self.stage = stage
        self.log_path = log_path
        self.log_tail = list(log_tail)
        self.script_exit_code = script_exit_code
        where = f" Full log: {log_path}" if log_path else ""
        super().__init__(f"QEMU image build failed during stage {stage!r}.{where}")


class LaunchFailure(QtraceError):
    """gdb, QEMU or the capture container did not start or died early."""

    def __init__(
        self, what: str, exitcode: int | None = None, log_tail: Sequence[str] = ()
    ) -> None:
        self.what = what
        self.exitcode = exitcode
        self.log_tail = list(log_tail)
        code = f" (exit code {exitcode})" if exitcode is not None else ""
        super().__init__(f"{what}{code}")


class GdbExited(LaunchFailure):
    """gdb's pipes closed mid-capture (gdb crashed or was killed). The host, not the
    collector, then closes the trace: nothing more can be asked of gdb."""


class QemuRefused(QtraceError):
    """QEMU exited before creating its devices: its command line was refused (a device
    without its backend, a bad property, hardware the host lacks). The message is QEMU's."""


class CaptureFailed(QtraceError):
    """A capture ran and left its evidence, but did not end ``ok``.

    Attributes:
        status: The end record's status (``timeout``, ``guest-hang``, ``error``, ...).
        reason: Why, as the end record says.
        out_dir: The run directory (what was captured is kept there).
    """

    def __init__(
        self, status: str, reason: str | None, out_dir: Path, hint: str | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.out_dir = out_dir
        why = f": {reason}" if reason else ""
        super().__init__(f"the capture ended {status}{why}", hint=hint)


class DiscoveryError(QtraceError):
    """The QEMU source in the image is not shaped as discovery expects (a function or a
    switch moved), so qtrace cannot tell where to watch."""


class GdbTimeout(QtraceError):
    """gdb did not answer an MI command in time."""


class CollectorError(QtraceError):
    """The collector running inside gdb reported an error."""


class TraceFormatError(QtraceError):
    """A trace file is not valid ``qtrace-trace/1``; names the file and line."""

    def __init__(self, path: Path | str, line: int, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        super().__init__(
            f"{path}:{line}: not a valid qtrace trace record: {reason}",
            hint="Traces are written by `qtrace capture`; check the file is a trace.jsonl.",
        )


class ReportError(QtraceError):
    """A report could not be generated from the given capture."""


class VerifyMismatch(QtraceError):
    """The reference model and QEMU disagree.

    Attributes:
        register: Name of the first register that differed (``None`` when the
            divergence is not a register read, e.g. the interrupt line or DMA memory).
        expected: QEMU's value at the first divergence.
        actual: The model's value there.
        count: How many reads (or checks) differed in all.
    """

    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        register: str | None = None,
        expected: int | None = None,
        actual: int | None = None,
        count: int = 1,
        hint: str | None = None,
    ) -> None:
        self.register = register
        self.expected = expected
        self.actual = actual
        self.count = count
        super().__init__(message, hint=hint)


class Unimplemented(QtraceError):
    """An access reached a register the reference model lists as not modelled.

    Attributes:
        space: ``"mmio"``, ``"pio"`` or ``"pci-config"``.
        offset: Offset inside that space.
        name: The register's name from the model's table.
        reason: Why it is not modelled.
    """

    def __init__(self, space: str, offset: int, name: str, reason: str) -> None:
        self.space = space
        self.offset = offset
        self.name = name
        self.reason = reason
        super().__init__(f"{space} register {name} at {offset:#x} is not modelled: {reason}")


class StateError(QtraceError):
    """An object was used in a state that does not allow the action."""

    def __init__(self, state: str, required: str) -> None:
        self.state = state
        self.required = required
        super().__init__(f"action needs state {required}, but the object is {state}")


class AbnormalShutdown(QtraceError):
    """A resource did not shut down cleanly even after escalation."""


class SignalInterrupt(KeyboardInterrupt):
    """A termination signal, delivered as an interrupt (see the module docstring).

    Attributes:
        signum: The signal's number.
        signal_name: e.g. ``SIGTERM``.
        exit_code: What the process exits with after cleaning up (128 + the signal's
            number, as a shell reports a process killed by it: 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.signal_name)


class Interrupted(QtraceError):
    """The run was stopped by Ctrl-C or a terminating signal; everything was cleaned up.

    Its exit code is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for
    SIGHUP), what a shell reports for a process the signal ended.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        by = "" if signum == signal.SIGINT else f" by {self.signal_name}"
        super().__init__(f"interrupted{by}: stopped and cleaned up.")

    @classmethod
    def from_interrupt(cls, exc: KeyboardInterrupt) -> "Interrupted":
        """The error for a caught interrupt: a :class:`SignalInterrupt` names its signal."""
        return cls(exc.signum if isinstance(exc, SignalInterrupt) else signal.SIGINT)
