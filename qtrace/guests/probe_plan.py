"""The probe guest's plan: build it from ``probe/`` in the container, boot it with -kernel."""

from __future__ import annotations

from qtrace.guests import DEBUG_EXIT_IOBASE, DEBUG_EXIT_OK_STATUS, DEBUGCON_IOBASE, PROBE_ELF_NAME, Q35_ECAM_BASE, probe_append
from qtrace.guests.plan import GuestPlan

__all__ = ["probe_plan", "PROBE_SEQUENCES"]

# Devices with a dedicated register sequence in the guest; the rest get the generic one.
PROBE_SEQUENCES = ("e1000",)


def probe_plan(
    device: str, machine: str, slot: int, guests_mount: str, out_mount: str, load_rounds: int = 0
) -> GuestPlan:
    """Plan for the bare-metal probe guest driving ``device`` at ``00:<slot>.0``.

    ``load_rounds`` adds that many quiet rounds of side-effect-free register reads
    (e1000 only): a longer run for benchmarks and fault tests.
    """
    seq = device if device in PROBE_SEQUENCES else "generic"
    mmcfg = Q35_ECAM_BASE if machine == "q35" else None
    return GuestPlan(
        name="probe",
        build_commands=(("make", "-s", "-C", f"{guests_mount}/probe", f"OUT={out_mount}/guest"),),
        kernel=f"{out_mount}/guest/{PROBE_ELF_NAME}",
        append=probe_append(f"00:{slot:02x}.0", seq, mmcfg=mmcfg, count=load_rounds, quiet=load_rounds > 0),  # type: ignore[arg-type]
        arm_on="debugcon_ioport_write",
        marker_port=DEBUGCON_IOBASE,
        exit_port=DEBUG_EXIT_IOBASE,
        ok_exit_statuses=(DEBUG_EXIT_OK_STATUS,),
        serial_verdict=True,
        quiet_ports=((0x3F8, 8), (DEBUGCON_IOBASE, 1)),
    )
