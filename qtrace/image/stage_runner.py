"""Runs one build stage in a throwaway container and commits it only when it succeeded.

Each stage is a script from ``docker/`` run in a container made from the previous image.
The container is labelled with the run id, its output streams into the build log, and it
is always removed: on success after ``commit`` (so only finished images get a tag), on
failure or Ctrl-C before anything is tagged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.models.containers import Container

from qtrace.docker_env import KIND_LABEL, PID_LABEL, RUN_LABEL, owner_labels
from qtrace.errors import BuildError

__all__ = ["StageSpec", "run_stage"]

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class StageSpec:
    """What one stage runs and what it becomes."""

    name: str
    from_image: str
    command: Sequence[str]
    to_repository: str
    to_tag: str
    labels: Mapping[str, str] = field(default_factory=dict)
    volumes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    network_mode: str = "host"


def run_stage(
    client: docker.DockerClient,
    spec: StageSpec,
    run_id: str,
    on_line: Callable[[str], None],
    late_labels: Callable[[], Mapping[str, str]] | None = None,
) -> str:
    """Run ``spec`` to completion and commit the result; returns the new image id.

    ``late_labels`` adds labels computed from the stage's own output, once it has finished.

    Raises:
        BuildError: the stage's script exited non-zero (carries the last log lines).
    """
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    container: Container | None = None
    # A fixed name lets cleanup find the container even if Ctrl-C lands while the create
    # request is in flight (the daemon made it, but Python never got the object).
    name = f"qtrace-{run_id}-{spec.name}"
    try:
        container = client.containers.create(
            spec.from_image,
            name=name,
            command=list(spec.command),
            network_mode=spec.network_mode,
            volumes={k: dict(v) for k, v in spec.volumes.items()},
            labels=owner_labels(run_id, f"build-{spec.name}"),
            detach=True,
        )
        logger.debug("stage %s: container %s", spec.name, container.short_id)
        container.start()
        pending = ""
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk.decode("utf-8", errors="replace")
            *lines, pending = pending.replace("\r", "\n").split("\n")
            for line in lines:
                tail.append(line)
                on_line(line)
        if pending:
            tail.append(pending)
            on_line(pending)
        status = container.wait()
        code = int(status.get("StatusCode", 1))
        if code != 0:
            raise BuildError(spec.name, None, list(tail), script_exit_code=code)
        # The build container's own run/kind labels would otherwise be inherited by every
        # container later made from this image; blank them (qtrace ignores blank labels).
        labels = {
            RUN_LABEL: "",
            KIND_LABEL: "",
            PID_LABEL: "",
            **spec.labels,
            **(late_labels() if late_labels else {}),
        }
        changes = [f'LABEL {k}="{_escape(v)}"' for k, v in sorted(labels.items())]
        image = container.commit(repository=spec.to_repository, tag=spec.to_tag, changes=changes)
        logger.debug("stage %s committed as %s:%s", spec.name, spec.to_repository, spec.to_tag)
        return str(image.id)
    finally:
        _remove(client, container, name)


def _remove(client: docker.DockerClient, container: Container | None, name: str) -> None:
    try:
        (container or client.containers.get(name)).remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:  # daemon trouble: doctor lists leftovers by label
        logger.warning("could not remove build container %s: %s", name, exc)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
