"""Connecting to the Docker daemon, and the one kind of container qtrace creates.

Shared by every stage that runs something in the debug image (the capture, the qtest
differential, ``qtrace devices``, ``qtrace doctor``): they all create a
:class:`LabelledContainer`, so every container qtrace makes carries :func:`owner_labels`
(its run, what it is for, the creating process) and is removed on every exit path. That is
what lets ``qtrace doctor`` and the tests' leftover guard see all of them.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Self

import docker
import docker.errors
from docker.models.containers import Container

from qtrace.errors import AbnormalShutdown, DockerUnavailable, LaunchFailure, StateError

__all__ = [
    "connect",
    "new_run_id",
    "qtrace_containers",
    "RUN_LABEL",
    "KIND_LABEL",
    "PID_LABEL",
    "owner_labels",
    "START_DOCKERD_HINT",
    "ContainerKind",
    "ContainerSpec",
    "ContainerState",
    "ExecResult",
    "LabelledContainer",
    "container_kwargs",
    "IDLE_COMMAND",
]

logger = logging.getLogger(__name__)

RUN_LABEL = "qtrace.run"
KIND_LABEL = "qtrace.kind"
PID_LABEL = "qtrace.pid"

START_DOCKERD_HINT = (
    "Start the daemon without bridge networking: "
    "`apt-get install -y docker.io && dockerd --bridge=none --iptables=false &` "
    "(or run ./scripts/setup, which does it)."
)


def connect(timeout_s: int = 600) -> docker.DockerClient:
    """A client for the local daemon; raises :class:`DockerUnavailable` with a fix."""
    try:
        client = docker.from_env(version="auto", timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DockerUnavailable(
            f"Cannot reach the Docker daemon: {exc}", hint=START_DOCKERD_HINT
        ) from exc
    logger.debug("connected to docker %s", client.api.api_version)
    return client


def qtrace_containers(client: docker.DockerClient) -> list[Container]:
    """Containers a qtrace run created (a non-blank run label), running or not."""
    # ignore_removed: a container removed between the listing and its inspection (another
    # run finishing meanwhile) is not an error, just no longer there.
    found = client.containers.list(all=True, filters={"label": RUN_LABEL}, ignore_removed=True)
    return [c for c in found if c.labels.get(RUN_LABEL)]


def owner_labels(run_id: str, kind: str) -> dict[str, str]:
    """Labels for a container qtrace creates: its run, what it is for, and the creating
    process (so a container whose creator is gone is recognisably an orphan)."""
    return {RUN_LABEL: run_id, KIND_LABEL: kind, PID_LABEL: str(os.getpid())}


def new_run_id() -> str:
    """A short id that labels every container of one qtrace run."""
    return uuid.uuid4().hex[:12]


class ContainerKind(StrEnum):
    """What a container is for (its ``qtrace.kind`` label and the end of its name)."""

    CAPTURE = "capture"
    VERIFY = "verify"
    DEVICES = "devices"
    DOCTOR = "doctor"


IDLE_COMMAND: tuple[str, ...] = ("sleep", "infinity")
"""The default main process: the container idles and qtrace runs things in it with exec."""


@dataclass(frozen=True)
class ContainerSpec:
    """Everything that decides how a container is created.

    Attributes:
        image: The image to run (the debug image).
        run_id: The ``qtrace.run`` label; one per qtrace run (a new id by default).
        mounts: host path -> (path in the container, ``"ro"``/``"rw"``).
        kvm: Pass ``/dev/kvm`` through (the only device a container ever gets).
        kind: What it is for.
        command: The main process; by default it idles (:data:`IDLE_COMMAND`).
        workdir: The main process's working directory (``None``: the image's).
        stop_timeout_s: How long ``close`` lets the main process stop before removal kills it.
    """

    image: str
    run_id: str = field(default_factory=lambda: new_run_id())
    mounts: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    kvm: bool = False
    kind: ContainerKind = ContainerKind.CAPTURE
    command: tuple[str, ...] = IDLE_COMMAND
    workdir: str | None = None
    stop_timeout_s: int = 5

    @property
    def name(self) -> str:
        return f"qtrace-{self.run_id}-{self.kind}"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


class ContainerState(Enum):
    IDLE = "idle"
    RUNNING = "running"
    EXITED = "exited"


def container_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Arguments for ``containers.create``: the security-relevant choices in one place
    (no network, no added privileges, only ``/dev/kvm`` when asked, the owner labels)."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command),
        "init": True,
        "network_mode": "none",
        "devices": ["/dev/kvm:/dev/kvm:rwm"] if spec.kvm else [],
        "volumes": {
            host: {"bind": path, "mode": mode} for host, (path, mode) in spec.mounts.items()
        },
        "name": spec.name,
        "labels": owner_labels(spec.run_id, spec.kind),
        "detach": True,
    }
    if spec.workdir is not None:
        kwargs["working_dir"] = spec.workdir
    return kwargs


class LabelledContainer:
    """A container qtrace owns: created labelled, used (exec, files, logs), always removed.

    A context manager: ``__enter__`` creates and starts it, ``__exit__`` (and :meth:`close`,
    idempotent) stops it softly and removes it by force. A failed or interrupted start
    removes whatever the daemon created. Removing the container ends every process in it,
    the last rung of each shutdown ladder built on it.
    """

    def __init__(self, client: docker.DockerClient, spec: ContainerSpec) -> None:
        self.client = client
        self.spec = spec
        self.state = ContainerState.IDLE
        self._container: Container | None = None

    def __repr__(self) -> str:
        cid = self._container.short_id if self._container else "-"
        return f"<LabelledContainer {self.spec.kind} {cid} {self.state.value}>"

    @property
    def id(self) -> str:
        return str(self._running().id)

    def _running(self) -> Container:
        if self._container is None or self.state is not ContainerState.RUNNING:
            raise StateError(self.state.value, ContainerState.RUNNING.value)
        return self._container

    def start(self) -> Self:
        """Create and start the container."""
        if self.state is not ContainerState.IDLE:
            raise StateError(self.state.value, ContainerState.IDLE.value)
        try:
            self._container = self.client.containers.create(**container_kwargs(self.spec))
            self._container.start()
        except docker.errors.APIError as exc:
            self._remove_by_name()
            self.close()
            raise LaunchFailure(
                f"could not start the {self.spec.kind} container: {exc.explanation or exc}"
            ) from exc
        except BaseException:  # Ctrl-C while the daemon was creating it
            self._remove_by_name()
            self.state = ContainerState.EXITED
            raise
        self.state = ContainerState.RUNNING
        logger.debug("%s container %s started", self.spec.kind, self._container.short_id)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, command: Sequence[str], workdir: str | None = None) -> ExecResult:
        """Run a command to completion in the container and return its output."""
        code, output = self._running().exec_run(
            list(command), workdir=workdir, demux=False, stream=False
        )
        text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else ""
        return ExecResult(-1 if code is None else int(code), text)

    def read_file(self, path: str) -> str:
        """A text file's contents from the container (via the archive API, no shell)."""
        stream, _ = self._running().get_archive(path)
        buffer = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buffer) as tar:
            member = tar.next()
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise FileNotFoundError(path)
            return handle.read().decode("utf-8", errors="replace")

    def logs(self, lines: int = 20) -> list[str]:
        """The last lines of the main process's output (empty when there is none to read)."""
        if self._container is None:
            return []
        try:
            text = self._container.logs(tail=lines).decode("utf-8", errors="replace")
        except docker.errors.DockerException:
            return []
        return text.splitlines()[-lines:]

    def _remove_by_name(self) -> None:
        try:
            self.client.containers.get(self.spec.name).remove(force=True)
        except docker.errors.APIError:
            pass
        self._container = None

    def close(self) -> None:
        """Stop and remove the container; idempotent. Soft stop, then forced removal.

        Raises:
            AbnormalShutdown: the daemon would not remove it.
        """
        container, self._container = self._container, None
        if container is None:
            self.state = ContainerState.EXITED
            return
        try:
            container.stop(timeout=self.spec.stop_timeout_s)
        except docker.errors.APIError as exc:
            logger.debug("stop failed (%s); removing by force", exc)
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            raise AbnormalShutdown(
                f"could not remove {self.spec.kind} container {container.short_id}: {exc}"
            ) from exc
        finally:
            self.state = ContainerState.EXITED
        logger.debug("%s container %s removed", self.spec.kind, container.short_id)
