"""The real ``qtrace build`` of QEMU 10.2.2 and what the image must hold."""

from __future__ import annotations


import docker

from qtrace.image.builder import (
    LABEL_CACHE_KEY,
    LABEL_CONFIGURE,
    LABEL_QEMU_VERSION,
    BuildRequest,
    BuildResult,
    build_image,
)
from qtrace.discover.exit_cases import KVM_ALL_PATH, REQUIRED_EXITS, locate_exit_cases
from tests.integration.conftest import RecordingEvents


def _run(client: docker.DockerClient, image: str, command: str) -> str:
    out = client.containers.run(image, ["bash", "-c", command], network_mode="none", remove=True)
    return out.decode()


def test_image_labels_record_version_flags_and_key(
    debug_image: BuildResult, docker_client: docker.DockerClient
) -> None:
    labels = docker_client.images.get(debug_image.image).labels
    assert labels[LABEL_QEMU_VERSION] == "10.2.2"
    assert "--enable-debug" in labels[LABEL_CONFIGURE]
    assert labels[LABEL_CACHE_KEY] == debug_image.cache_key


def test_binary_is_a_debug_build_gdb_resolves_handler_to_source(
    debug_image: BuildResult, docker_client: docker.DockerClient
) -> None:
    out = _run(
        docker_client,
        debug_image.image,
        "/src/qemu/build/qemu-system-x86_64 --version && "
        "gdb -nx -batch -ex 'info line e1000_mmio_read' /src/qemu/build/qemu-system-x86_64",
    )
    assert "QEMU emulator version 10.2.2" in out
    assert "hw/net/e1000.c" in out, out


def test_image_holds_firmware_source_gdb_and_guest_toolchain(
    debug_image: BuildResult, docker_client: docker.DockerClient
) -> None:
    out = _run(
        docker_client,
        debug_image.image,
        (
            "ls /usr/share/seabios/bios-256k.bin /usr/lib/ipxe/qemu/efi-e1000.rom "
            "/usr/share/qemu/kvmvapic.bin /src/qemu/hw/net/e1000.c "
            "&& gdb --version | head -1 && gcc --version | head -1 "
            "&& ld -V | grep -c elf_i386"
        ),
    )
    assert "bios-256k.bin" in out and "efi-e1000.rom" in out and "kvmvapic.bin" in out
    assert "GNU gdb" in out and "gcc" in out


def test_warm_build_is_cached_and_runs_no_stage(debug_image: BuildResult) -> None:
    events = RecordingEvents()
    result = build_image(BuildRequest(), events)
    assert result.cached
    assert result.image == debug_image.image
    # How fast a warm build returns is measured in the README; here only that no build ran.
    assert "compile" not in events.stages and not events.steps, events.stages


def test_exit_cases_found_in_the_real_10_2_2_source(
    debug_image: BuildResult, docker_client: docker.DockerClient
) -> None:
    source = _run(docker_client, debug_image.image, f"cat /src/qemu/{KVM_ALL_PATH}")
    cases = locate_exit_cases(source)
    labels = {label for case in cases for label in case.labels}
    assert set(REQUIRED_EXITS) <= labels
    lines = source.splitlines()
    for case in cases:
        assert lines[case.label_line - 1].strip().startswith(f"case {case.labels[0]}")
        assert case.body_line > case.label_line
    mmio = next(c for c in cases if "KVM_EXIT_MMIO" in c.labels)
    assert "address_space_rw" in "".join(lines[mmio.body_line - 1 : mmio.body_line + 2])
