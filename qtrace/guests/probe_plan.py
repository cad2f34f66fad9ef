"""The probe guest's plan: build it from ``probe/`` in the container, boot it with -kernel."""

from __future__ import annotations

from qtrace.guests import (
    PROBE_SEQUENCES,
    DEBUG_EXIT_IOBASE,
    DEBUG_EXIT_OK_STATUS,
    DEBUGCON_IOBASE,
    PROBE_ELF_NAME,
    Q35_ECAM_BASE,
    probe_append,
)
from qtrace.devices import pack_or_default
from qtrace.errors import UsageError
from qtrace.guests.plan import GuestPlan
from qtrace.guests.probe_output import probe_verdict

__all__ = ["probe_plan"]


def probe_plan(
    device: str,
    machine: str,
    slot: int,
    guests_mount: str,
    out_mount: str,
    load_rounds: int = 0,
    *,
    bus: int = 0,
) -> GuestPlan:
    """Plan for the bare-metal probe guest driving ``device`` at ``<bus>:<slot>.0``.

    A ``bus`` other than 0 is a bridge's secondary bus as the probe numbers it while it
    enumerates the bridges (the device behind a root port: ``01:00.0``).

    ``load_rounds`` adds that many quiet rounds of side-effect-free register reads
    (the ``e1000`` sequence only): a longer run for benchmarks and fault tests. The
    register sequence is the one the device's pack names (``[guests] probe_sequence``).
    """
    pack = pack_or_default(device)
    seq = pack.probe_sequence
    if seq not in PROBE_SEQUENCES:
        raise UsageError(
            f"the device pack of {device!r} names the probe sequence {seq!r}, "
            f"which the probe guest does not have",
            hint=(
                f"set [guests] probe_sequence in its pack.toml to one of: "
                f"{', '.join(PROBE_SEQUENCES)}"
            ),
        )
    mmcfg = Q35_ECAM_BASE if machine == "q35" else None
    return GuestPlan(
        name="probe",
        build_commands=(("make", "-s", "-C", f"{guests_mount}/probe", f"OUT={out_mount}/guest"),),
        kernel=f"{out_mount}/guest/{PROBE_ELF_NAME}",
        append=probe_append(
            f"{bus:02x}:{slot:02x}.0",
            seq,
            mmcfg=mmcfg,
            count=load_rounds,
            quiet=load_rounds > 0,
            extra=pack.probe_args,
        ),
        arm_on="debugcon_ioport_write",
        marker_port=DEBUGCON_IOBASE,
        exit_port=DEBUG_EXIT_IOBASE,
        ok_exit_statuses=(DEBUG_EXIT_OK_STATUS,),
        serial_verdict=probe_verdict,
        quiet_ports=((0x3F8, 8), (DEBUGCON_IOBASE, 1)),
    )
