"""Connecting to the Docker daemon, and the labels qtrace puts on what it creates.

Shared by ``build`` and ``launch``: both need a client and both label their containers so
``qtrace doctor`` can find orphans.
"""

from __future__ import annotations

import logging
import os
import uuid

import docker
import docker.errors
from docker.models.containers import Container

from qtrace.errors import DockerUnavailable

__all__ = [
    "connect",
    "new_run_id",
    "qtrace_containers",
    "RUN_LABEL",
    "KIND_LABEL",
    "PID_LABEL",
    "owner_labels",
    "START_DOCKERD_HINT",
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
