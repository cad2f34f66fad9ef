"""The capture container: one per capture, labelled, always removed.

It idles (``sleep infinity`` under docker's init) while qtrace runs things in it with
``exec``: building the guest, reading the QEMU source, and gdb itself. Removing the
container ends every process in it, which is the last rung of the shutdown ladder.
Network: none. Devices: only ``/dev/kvm`` when KVM is used. No privileges added.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from qtrace.docker_env import owner_labels
from qtrace.errors import AbnormalShutdown, LaunchFailure, StateError
from qtrace.image.layout import QEMU_SOURCE_ROOT

__all__ = ["ContainerSpec", "CaptureContainer", "ContainerSource", "container_kwargs", "ExecResult", "State"]

logger = logging.getLogger(__name__)


class State(Enum):
    IDLE = "idle"
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that decides how the capture container is created."""

    image: str
    run_id: str
    mounts: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # host -> (path, mode)
    kvm: bool = True


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


def container_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Arguments for ``containers.create``: the security-relevant choices in one place."""
    return {
        "image": spec.image,
        "command": ["sleep", "infinity"],
        "init": True,
        "network_mode": "none",
        "devices": ["/dev/kvm:/dev/kvm:rwm"] if spec.kvm else [],
        "volumes": {host: {"bind": path, "mode": mode} for host, (path, mode) in spec.mounts.items()},
        "name": f"qtrace-{spec.run_id}-capture",
        "labels": owner_labels(spec.run_id, "capture"),
        "detach": True,
        "working_dir": "/out",
    }


class CaptureContainer:
    """Context manager around the capture container (create, exec, read files, remove)."""

    def __init__(self, client: docker.DockerClient, spec: ContainerSpec) -> None:
        self.client = client
        self.spec = spec
        self.state = State.IDLE
        self._container: Container | None = None

    def __repr__(self) -> str:
        cid = self._container.short_id if self._container else "-"
        return f"<CaptureContainer {cid} {self.state.value}>"

    @property
    def id(self) -> str:
        if self._container is None:
            raise StateError(self.state.value, State.RUNNING.value)
        return str(self._container.id)

    def __enter__(self) -> "CaptureContainer":
        kwargs = container_kwargs(self.spec)
        try:
            self._container = self.client.containers.create(**kwargs)
            self._container.start()
        except docker.errors.APIError as exc:
            self._remove_by_name(kwargs["name"])
            self.close()
            raise LaunchFailure(f"could not start the capture container: {exc.explanation or exc}") from exc
        except BaseException:  # Ctrl-C while the daemon was creating it
            self._remove_by_name(kwargs["name"])
            raise
        self.state = State.RUNNING
        logger.debug("capture container %s started", self._container.short_id)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, command: Sequence[str], workdir: str | None = None) -> ExecResult:
        """Run a command to completion in the container and return its output."""
        if self._container is None or self.state is not State.RUNNING:
            raise StateError(self.state.value, State.RUNNING.value)
        code, output = self._container.exec_run(list(command), workdir=workdir, demux=False, stream=False)
        text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else ""
        return ExecResult(-1 if code is None else int(code), text)

    def read_file(self, path: str) -> str:
        """A text file's contents from the container (via the archive API, no shell)."""
        if self._container is None:
            raise StateError(self.state.value, State.RUNNING.value)
        stream, _ = self._container.get_archive(path)
        buffer = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buffer) as tar:
            member = tar.next()
            if member is None:
                raise FileNotFoundError(path)
            handle = tar.extractfile(member)
            if handle is None:
                raise FileNotFoundError(path)
            return handle.read().decode("utf-8", errors="replace")

    def _remove_by_name(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.APIError:
            pass
        self._container = None

    def close(self, stop_timeout_s: int = 5) -> None:
        """Stop and remove the container; idempotent. Soft stop, then forced removal."""
        container, self._container = self._container, None
        if container is None:
            self.state = State.EXITED
            return
        try:
            container.stop(timeout=stop_timeout_s)
        except docker.errors.APIError as exc:
            logger.debug("stop failed (%s); removing by force", exc)
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise AbnormalShutdown(f"could not remove capture container {container.short_id}: {exc}") from exc
        finally:
            self.state = State.EXITED
        logger.debug("capture container %s removed", container.short_id)


class ContainerSource:
    """The QEMU source tree inside the image, as a :class:`qtrace.discover.device.SourceReader`."""

    def __init__(self, container: CaptureContainer, root: str = QEMU_SOURCE_ROOT) -> None:
        self._container = container
        self._root = root.rstrip("/")
        self._cache: dict[str, str] = {}

    def read(self, path: str) -> str:
        if path not in self._cache:
            self._cache[path] = self._container.read_file(f"{self._root}/{path}")
        return self._cache[path]

    def grep(self, fixed_string: str, under: tuple[str, ...]) -> list[str]:
        result = self._container.exec(
            ["grep", "-rlF", "--include=*.c", "--include=*.h", "--", fixed_string, *under], workdir=self._root
        )
        if result.exit_code not in (0, 1):
            raise LaunchFailure(f"grep in the QEMU source failed: {result.output.strip()[:200]}")
        return sorted(line.strip() for line in result.output.splitlines() if line.strip())
