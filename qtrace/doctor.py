"""``qtrace doctor``: is this machine ready for ``qtrace capture``?

Each check is a small function returning a :class:`Check`; the list of them is data. KVM is
tested the way QEMU uses it: inside a container that got ``/dev/kvm`` passed through, open
the device and create a VM (``KVM_CREATE_VM``), not merely ``stat`` the node.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import docker
import docker.errors

from qtrace.image.builder import (
    LABEL_QEMU_VERSION,
    QEMU_REPOSITORY,
    find_qemu_image,
    qemu_image_tag,
)
from qtrace.image.versions import DEFAULT_QEMU_VERSION
from qtrace.docker_env import (
    KIND_LABEL,
    START_DOCKERD_HINT,
    ContainerKind,
    ContainerSpec,
    RUN_LABEL,
    LabelledContainer,
    connect,
    qtrace_containers,
)
from qtrace.errors import DockerUnavailable
from qtrace.launch.kernel_events import leftover_tracing, probe_tracefs

__all__ = [
    "Check",
    "run_checks",
    "doctor_ok",
    "checks_as_json",
    "MIN_FREE_DISK_GB",
    "KVM_PROBE_SCRIPT",
]

Status = Literal["ok", "warning", "error"]
MIN_FREE_DISK_GB = 10.0
KERNEL_EVENTS_CHECK = "kernel events"
OPTIONAL_CHECKS = frozenset({KERNEL_EVENTS_CHECK})
"""Checks whose warning leaves captures possible (they lose a part of the evidence)."""

# KVM_GET_API_VERSION = _IO(0xAE, 0x00); KVM_CREATE_VM = _IO(0xAE, 0x01).
KVM_PROBE_SCRIPT = (
    "import fcntl, os\n"
    "fd = os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC)\n"
    "api = fcntl.ioctl(fd, 0xAE00)\n"
    "vm = fcntl.ioctl(fd, 0xAE01, 0)\n"
    "print('kvm api', api, 'vm fd', vm)\n"
)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class _Context:
    qemu_version: str
    client: docker.DockerClient | None = None
    image: str | None = None


def _check_docker(ctx: _Context) -> Check:
    try:
        ctx.client = connect(timeout_s=30)
    except DockerUnavailable as exc:
        return Check("docker daemon", "error", str(exc), START_DOCKERD_HINT)
    version = ctx.client.version().get("Version", "?")
    return Check("docker daemon", "ok", f"reachable, engine {version}")


def _check_image(ctx: _Context) -> Check:
    tag = qemu_image_tag(ctx.qemu_version)
    if ctx.client is None:
        return Check(
            "debug image", "error", "not checked: no Docker daemon", "Fix the Docker check first."
        )
    image = find_qemu_image(ctx.client, ctx.qemu_version)
    if image is None:
        others = sorted(t for i in ctx.client.images.list(QEMU_REPOSITORY) for t in i.tags)
        have = f" (present: {', '.join(others)})" if others else ""
        return Check(
            "debug image",
            "error",
            f"{tag} not built{have}",
            f"qtrace build --qemu-version {ctx.qemu_version}",
        )
    ctx.image = tag
    return Check("debug image", "ok", f"{tag}: QEMU {image.labels.get(LABEL_QEMU_VERSION, '?')}")


def _run_in_image(ctx: _Context, command: list[str], kvm: bool = False) -> tuple[int, str]:
    """Run ``command`` in a doctor container of the debug image (with ``/dev/kvm`` if asked)."""
    assert ctx.client is not None and ctx.image is not None
    spec = ContainerSpec(image=ctx.image, kind=ContainerKind.DOCTOR, kvm=kvm)
    with LabelledContainer(ctx.client, spec) as container:
        result = container.exec(command)
    return result.exit_code, result.output.strip()


def _check_gdb(ctx: _Context) -> Check:
    if ctx.image is None:
        return Check(
            "gdb in image", "error", "not checked: no debug image", "Build the image first."
        )
    code, out = _run_in_image(ctx, ["gdb", "--version"])
    if code != 0:
        return Check(
            "gdb in image",
            "error",
            out.splitlines()[-1] if out else f"exit {code}",
            "qtrace build --force",
        )
    return Check("gdb in image", "ok", out.splitlines()[0])


def _check_kvm(ctx: _Context) -> Check:
    fix = (
        "Without KVM, capture with --accel tcg. "
        "To use KVM: load kvm_intel/kvm_amd and make /dev/kvm readable."
    )
    if not Path("/dev/kvm").exists():
        return Check("kvm", "warning", "/dev/kvm does not exist on this host", fix)
    if ctx.image is None:
        return Check(
            "kvm",
            "warning",
            "/dev/kvm exists; not tested in a container (no debug image)",
            "Build the image first.",
        )
    code, out = _run_in_image(ctx, ["python3", "-c", KVM_PROBE_SCRIPT], kvm=True)
    if code != 0:
        return Check(
            "kvm",
            "warning",
            f"KVM_CREATE_VM failed in the container: {out.splitlines()[-1] if out else code}",
            fix,
        )
    return Check("kvm", "ok", f"/dev/kvm usable in a container ({out})")


def _check_disk(ctx: _Context) -> Check:
    root = "/var/lib/docker" if os.path.isdir("/var/lib/docker") else "/"
    free_gb = shutil.disk_usage(root).free / 1e9
    if free_gb < MIN_FREE_DISK_GB:
        return Check(
            "free disk",
            "warning",
            f"{free_gb:.1f} GB free under {root}",
            f"A build needs about {MIN_FREE_DISK_GB:.0f} GB; free some space.",
        )
    return Check("free disk", "ok", f"{free_gb:.1f} GB free under {root}")


def _check_orphans(ctx: _Context) -> Check:
    if ctx.client is None:
        return Check("leftover containers", "error", "not checked: no Docker daemon")
    leftovers = [
        c for c in qtrace_containers(ctx.client) if c.labels.get(KIND_LABEL) != ContainerKind.DOCTOR
    ]
    if leftovers:
        ids = " ".join(c.short_id for c in leftovers)
        return Check(
            "leftover containers",
            "warning",
            f"{len(leftovers)} qtrace container(s) left: {ids}",
            f"docker rm -f {ids}",
        )
    return Check("leftover containers", "ok", "none")


def _check_tracefs(ctx: _Context) -> Check:
    """Can a KVM capture record the host kernel's kvm: events (tracefs)? Optional: without
    it a capture still runs, and its kernel.jsonl says why the kernel side is missing."""
    status = probe_tracefs()
    if ctx.client is not None:
        live = {c.labels.get(RUN_LABEL, "") for c in qtrace_containers(ctx.client)}
        left = leftover_tracing(live)
        if left:
            return Check(
                KERNEL_EVENTS_CHECK,
                "warning",
                f"{len(left)} tracefs instance(s)/mount(s) left by a capture that was killed",
                "; ".join(left),
            )
    if not status.usable:
        return Check(
            KERNEL_EVENTS_CHECK,
            "warning",
            f"KVM captures will not record the kernel's side: {status.reason}",
            status.fix or "",
        )
    if status.mountable:
        return Check(
            KERNEL_EVENTS_CHECK,
            "ok",
            "tracefs is not mounted; a capture mounts it privately and unmounts it after",
        )
    return Check(KERNEL_EVENTS_CHECK, "ok", f"tracefs at {status.root}")


CHECKS: tuple[Callable[[_Context], Check], ...] = (
    _check_docker,
    _check_image,
    _check_gdb,
    _check_kvm,
    _check_disk,
    _check_orphans,
    _check_tracefs,
)


def run_checks(qemu_version: str = DEFAULT_QEMU_VERSION) -> list[Check]:
    """Run every check in order; later checks reuse what earlier ones found."""
    ctx = _Context(qemu_version=qemu_version)
    return [check(ctx) for check in CHECKS]


def doctor_ok(checks: list[Check]) -> bool:
    """True only when ``qtrace capture`` with KVM can run: every check ok (a warning of an
    optional check, :data:`OPTIONAL_CHECKS`, does not count)."""
    return all(
        c.status == "ok" or (c.name in OPTIONAL_CHECKS and c.status == "warning") for c in checks
    )


def checks_as_json(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
