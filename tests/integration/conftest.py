"""Fixtures for the tests that run the real thing: Docker, the debug QEMU image, gdb, KVM.

The image is built once per test session (``qtrace build`` is cached by content, so a
warm run reuses it) and each capture configuration runs once and is shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from qtrace.image.builder import BuildRequest, BuildResult, build_image
from qtrace.docker_env import PID_LABEL, connect, qtrace_containers
from qtrace.launch.capture import CaptureRequest, CaptureResult, run_capture
from qtrace.launch.kvm import kvm_usable
from qtrace.launch.live import LiveStats


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


class RecordingEvents:
    """Build/capture observer that keeps what it was told (for assertions and the log)."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.steps: list[tuple[int, int]] = []
        self.lines: list[str] = []
        self.statuses: list[str] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)
        print(f"[build] stage {name}", flush=True)

    def step(self, done: int, total: int) -> None:
        self.steps.append((done, total))

    def line(self, text: str) -> None:
        self.lines.append(text)

    def status(self, text: str) -> None:
        self.statuses.append(text)

    def progress(self, stats: LiveStats, elapsed_s: float, armed: bool) -> None:
        return None


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return connect()


@pytest.fixture(scope="session")
def debug_image() -> BuildResult:
    """The 10.2.2 debug image: built for real on a fresh machine, reused when cached."""
    events = RecordingEvents()
    result = build_image(BuildRequest(), events)
    print(
        f"\n[build] {result.image}: {'cached' if result.cached else 'built'} "
        f"in {result.elapsed_s:.0f} s",
        flush=True,
    )
    return result


def require_kvm() -> None:
    """KVM tests never skip in CI; elsewhere they skip loudly when KVM is unusable."""
    usable, why = kvm_usable()
    if not usable:
        if os.environ.get("CI"):
            pytest.fail(f"KVM is required in CI but not usable: {why}")
        pytest.skip(f"KVM not usable on this machine ({why}); KVM-specific test skipped")


@pytest.fixture(scope="session")
def captures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captures")


@pytest.fixture(scope="session")
def build_version(debug_image: BuildResult) -> Callable[[str], BuildResult]:
    """Build (once per session, cached across sessions) the debug image of another QEMU version."""
    built: dict[str, BuildResult] = {debug_image.qemu_version: debug_image}

    def build(version: str) -> BuildResult:
        if version not in built:
            built[version] = build_image(BuildRequest(qemu_version=version), RecordingEvents())
            print(
                f"\n[build] {built[version].image}: "
                f"{'cached' if built[version].cached else 'built'}",
                flush=True,
            )
        return built[version]

    return build


@pytest.fixture(scope="session")
def capture(
    debug_image: BuildResult, build_version: Callable[[str], BuildResult], captures_dir: Path
) -> Callable[..., CaptureResult]:
    """Run (once per distinct configuration) a real capture and return its result."""
    done: dict[tuple[object, ...], CaptureResult] = {}

    def run(
        device: str = "e1000", accel: str = "kvm", machine: str = "pc", **extra: object
    ) -> CaptureResult:
        key = (device, accel, machine, tuple(sorted(extra.items())))
        if key not in done:
            if "qemu_version" in extra:
                build_version(str(extra["qemu_version"]))
            if accel == "kvm":
                require_kvm()
            out = captures_dir / "-".join(
                [device, accel, machine, *(f"{k}{v}" for k, v in sorted(extra.items()))]
            )
            request = CaptureRequest(
                device=device, accel=accel, machine=machine, out_dir=out, **extra
            )  # type: ignore[arg-type]
            done[key] = run_capture(request, RecordingEvents())
        return done[key]

    return run


@pytest.fixture(autouse=True)
def no_leftover_containers(docker_client: docker.DockerClient) -> Iterator[None]:
    """Every integration test must leave no container of this test process behind (a
    developer's unrelated capture running beside the suite does not count)."""
    yield
    mine = str(os.getpid())
    left = [c for c in qtrace_containers(docker_client) if c.labels.get(PID_LABEL) == mine]
    assert not left, f"containers left behind: {[c.name for c in left]}"
