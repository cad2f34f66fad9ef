"""``qtrace build``: a debug ``qemu-system-x86_64`` in a Docker image, cached by content.

Three images, each made by one stage script from ``docker/`` in a throwaway container from
the one before:

1. ``qtrace/toolchain:<key>``: Debian bookworm + build tools, gdb, firmware, meson, Debian's
   kernel. Shared by every QEMU version; its labels record which QEMU versions Debian's
   source index lists.
2. ``qtrace/qemu-compiled:<version>``: the QEMU source tree at ``/src/qemu`` (so gdb shows
   source), built with ``--enable-debug``; labels record version, configure flags and the
   compile key.
3. ``qtrace/qemu:<version>-debug``, what captures run: the compiled image plus the kernel
   modules the linux guest loads its drivers from (``install-linux-modules.sh``) and gdbserver
   with its in-process tracing agent for the fast collector (``install-trace-agent.sh``). It is
   the last stage so that changing it never recompiles QEMU; its key is the compile key and
   those two scripts' digest.

Only a stage that finished is committed and tagged, so an interrupted or failed build never
leaves an image that looks valid.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Protocol

import docker
import docker.errors
from docker.models.images import Image

from qtrace.image.base_image import BASE_IMAGE, ensure_base_image
from qtrace.image.cache_key import cache_key, recipe_digest, tree_digest
from qtrace.image.progress import parse_progress_line
from qtrace.image.stage_runner import StageSpec, run_stage
from qtrace.image.versions import DEFAULT_QEMU_VERSION, available_versions, resolve_version
from qtrace.docker_env import connect, new_run_id
from qtrace.errors import (
    BuildError,
    EnvironmentProblem,
    ImageMissing,
    UnknownQemuVersion,
    UsageError,
)
from qtrace.paths import cache_dir, docker_dir

__all__ = [
    "require_image",
    "BuildRequest",
    "BuildResult",
    "BuildEvents",
    "build_image",
    "qemu_image_tag",
    "find_qemu_image",
    "LABEL_QEMU_VERSION",
    "LABEL_CACHE_KEY",
    "LABEL_CONFIGURE",
    "QEMU_REPOSITORY",
    "COMPILED_REPOSITORY",
    "TOOLCHAIN_REPOSITORY",
]

logger = logging.getLogger(__name__)

QEMU_REPOSITORY = "qtrace/qemu"
COMPILED_REPOSITORY = "qtrace/qemu-compiled"
TOOLCHAIN_REPOSITORY = "qtrace/toolchain"
LABEL_QEMU_VERSION = "qtrace.qemu-version"
LABEL_DEBIAN_VERSION = "qtrace.debian-version"
LABEL_CACHE_KEY = "qtrace.cache-key"
LABEL_COMPILE_KEY = "qtrace.compile-key"
LABEL_CONFIGURE = "qtrace.configure-flags"
LABEL_SOURCE = "qtrace.source"
LABEL_SOURCE_VERSIONS = "qtrace.qemu-source-versions"

SOURCE_MOUNT = "/qtrace-source"
DOCKER_MOUNT = "/qtrace-docker"
WHEELS_MOUNT = "/qtrace-wheels"
SOURCE_UNAVAILABLE_EXIT = 42
# The configure line recorded on the image; the script adapts two flags per QEMU version.
CONFIGURE_FLAGS = (
    "--target-list=x86_64-softmmu --enable-debug --disable-docs --disable-werror --enable-kvm "
    "--enable-tcg --enable-slirp --disable-gtk --disable-sdl --disable-vnc --disable-opengl "
    "--disable-install-blobs"
)
_WHEELS = ("meson==1.9.0", "pycotap==1.3.1")
COMPILE_SCRIPT = "build-qemu.sh"
MODULES_SCRIPT = "install-linux-modules.sh"
# gdbserver and its in-process agent for the fast collector; run in the same last stage.
AGENT_SCRIPT = "install-trace-agent.sh"
_VERSION_LINE = "qemu-source-version: "


class BuildEvents(Protocol):
    """What the build reports while it runs (the CLI draws it; tests record it)."""

    def stage(self, name: str) -> None: ...

    def step(self, done: int, total: int) -> None: ...

    def line(self, text: str) -> None: ...


@dataclass(frozen=True)
class BuildRequest:
    """What to build."""

    qemu_version: str = DEFAULT_QEMU_VERSION
    source_dir: Path | None = None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    force: bool = False


@dataclass(frozen=True)
class BuildResult:
    """What was built (or found in the cache)."""

    image: str
    qemu_version: str
    cached: bool
    cache_key: str
    log_path: Path | None = None
    base_image: str | None = None
    elapsed_s: float = 0.0


def qemu_image_tag(qemu_version: str) -> str:
    """The tag of the debug image for a QEMU version (``qtrace/qemu:10.2.2-debug``)."""
    return f"{QEMU_REPOSITORY}:{qemu_version}-debug"


def find_qemu_image(client: docker.DockerClient, qemu_version: str) -> Image | None:
    """The debug image for ``qemu_version`` if it has been built."""
    try:
        return client.images.get(qemu_image_tag(qemu_version))
    except docker.errors.ImageNotFound:
        return None


def require_image(client: docker.DockerClient, qemu_version: str, also: str = "") -> Image:
    """The debug image for ``qemu_version``, or :class:`ImageMissing` saying how to build it
    (``also`` adds another way, e.g. a command's ``--build``)."""
    image = find_qemu_image(client, qemu_version)
    if image is None:
        raise ImageMissing(
            f"The debug image {qemu_image_tag(qemu_version)} has not been built.",
            hint=f"Run `qtrace build --qemu-version {qemu_version}`{also}.",
        )
    return image


def _toolchain_key(recipe: Path) -> str:
    return cache_key(
        "toolchain", recipe_digest(recipe, ("install-deps.sh", "packages.txt")), BASE_IMAGE
    )


def _source_identity(request: BuildRequest) -> tuple[str, str]:
    """(version label, source identity for the key) of the requested QEMU source."""
    if request.source_dir is None:
        return request.qemu_version, f"debian:{request.qemu_version}"
    tree = request.source_dir.resolve()
    if not (tree / "configure").is_file() or not (tree / "VERSION").is_file():
        raise UsageError(
            f"{tree} is not a QEMU source tree (no configure or VERSION file).",
            hint="Pass the top folder of a QEMU checkout to --source.",
        )
    version = (tree / "VERSION").read_text().strip()
    digest = tree_digest(tree)
    return f"{version}-local-{digest[:8]}", f"tree:{digest}"


def build_image(
    request: BuildRequest, events: BuildEvents, log_dir: Path | None = None
) -> BuildResult:
    """Build (or reuse) the debug QEMU image described by ``request``.

    Raises:
        UnknownQemuVersion: the version is not in Debian's source index.
        BuildError: a stage failed; the log path and last lines are attached.
        DockerUnavailable: no daemon.
    """
    started = time.monotonic()
    if request.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {request.jobs}.")
    client = connect()
    recipe = docker_dir()
    version_label, source_identity = _source_identity(request)
    toolchain_key = _toolchain_key(recipe)
    compile_key = cache_key(
        toolchain_key, recipe_digest(recipe, (COMPILE_SCRIPT,)), source_identity
    )
    key = final_key(compile_key, recipe)
    tag = qemu_image_tag(version_label)

    existing = find_qemu_image(client, version_label)
    if existing is not None and existing.labels.get(LABEL_CACHE_KEY) == key and not request.force:
        return BuildResult(tag, version_label, True, key, elapsed_s=time.monotonic() - started)

    log_dir = log_dir or cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = log_dir / f"build-{version_label}-{stamp}.log"
    with log_path.open("w", encoding="utf-8") as log_file:
        sink = _LogSink(log_file, events)
        try:
            return _build(
                client,
                request,
                events,
                sink,
                recipe,
                version_label,
                toolchain_key,
                compile_key,
                key,
                tag,
                log_path,
                started,
            )
        except BuildError as exc:
            exc.stage = sink.current_stage or exc.stage
            exc.log_path = log_path
            exc.message = (
                f"QEMU image build failed during stage {exc.stage!r}. Full log: {log_path}"
            )
            raise


class _LogSink:
    """Writes every line to the log file and forwards progress to the events."""

    def __init__(self, log_file: IO[str], events: BuildEvents) -> None:
        self._file = log_file
        self._events = events
        self.current_stage: str | None = None

    def __call__(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()
        progress = parse_progress_line(line)
        if progress is not None and progress.stage:
            self.current_stage = progress.stage
            self._events.stage(progress.stage)
        elif progress is not None and progress.step is not None and progress.total is not None:
            self._events.step(progress.step, progress.total)
        self._events.line(line)


def final_key(compile_key: str, recipe: Path) -> str:
    """The key of the image captures run: the compiled QEMU's key and the last stage's
    scripts (linux modules, trace agent), so changing them rebuilds only the last stage."""
    return cache_key(compile_key, recipe_digest(recipe, (MODULES_SCRIPT, AGENT_SCRIPT)))


def _build(
    client: docker.DockerClient,
    request: BuildRequest,
    events: BuildEvents,
    sink: Callable[[str], None],
    recipe: Path,
    version_label: str,
    toolchain_key: str,
    compile_key: str,
    key: str,
    tag: str,
    log_path: Path,
    started: float,
) -> BuildResult:
    run_id = new_run_id()
    events.stage("base image")
    how = ensure_base_image(client, sink)
    toolchain = _ensure_toolchain(client, events, sink, recipe, toolchain_key, run_id)
    compiled = _Compiled(
        client, request, sink, recipe, toolchain, version_label, compile_key, run_id
    ).ensure()
    repository, image_tag = tag.split(":", 1)
    spec = StageSpec(
        name="linux-modules",
        from_image=compiled,
        command=[
            "bash",
            "-c",
            f"bash {DOCKER_MOUNT}/{MODULES_SCRIPT} && bash {DOCKER_MOUNT}/{AGENT_SCRIPT}",
        ],
        to_repository=repository,
        to_tag=image_tag,
        labels={LABEL_CACHE_KEY: key, LABEL_COMPILE_KEY: compile_key},
        volumes={str(recipe): {"bind": DOCKER_MOUNT, "mode": "ro"}},
    )
    run_stage(client, spec, run_id, sink)
    return BuildResult(tag, version_label, False, key, log_path, how, time.monotonic() - started)


@dataclass(frozen=True)
class _Compiled:
    """The compiled QEMU image of one build: found, kept from before, or compiled."""

    client: docker.DockerClient
    request: BuildRequest
    sink: Callable[[str], None]
    recipe: Path
    toolchain: Image
    version_label: str
    compile_key: str
    run_id: str

    @property
    def tag(self) -> str:
        return f"{COMPILED_REPOSITORY}:{self.version_label}"

    def ensure(self) -> str:
        """The image's tag, compiling only when none is kept. An image built before the
        modules stage existed is such a compiled image (its cache key is the compile key):
        it is tagged as one, not compiled again."""
        if not self.request.force:
            if self._labelled(self.tag, LABEL_COMPILE_KEY) is not None:
                self.sink(f"compiled image {self.tag}: found")
                return self.tag
            earlier = qemu_image_tag(self.version_label)
            legacy = self._labelled(earlier, LABEL_CACHE_KEY)
            if legacy is not None:
                legacy.tag(COMPILED_REPOSITORY, self.version_label)
                self.sink(f"compiled image {self.tag}: {earlier}, built before the modules stage")
                return self.tag
        self._compile()
        return self.tag

    def _labelled(self, tag: str, label: str) -> Image | None:
        """The image ``tag`` if it exists and its ``label`` is the compile key."""
        try:
            image = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        return image if image.labels.get(label) == self.compile_key else None

    def _compile(self) -> None:
        """Run the compile stage into :attr:`tag`, trying each Debian version the source
        index gives for the request until the archive serves one."""
        request = self.request
        source_versions = self.toolchain.labels.get(LABEL_SOURCE_VERSIONS, "").split()
        volumes = {str(self.recipe): {"bind": DOCKER_MOUNT, "mode": "ro"}}
        if request.source_dir is not None:
            volumes[str(request.source_dir.resolve())] = {"bind": SOURCE_MOUNT, "mode": "ro"}
            candidates = [""]
        else:
            candidates = resolve_version(request.qemu_version, source_versions)
        labels = {
            LABEL_QEMU_VERSION: self.version_label,
            LABEL_COMPILE_KEY: self.compile_key,
            LABEL_CONFIGURE: CONFIGURE_FLAGS,
            LABEL_SOURCE: str(request.source_dir.resolve()) if request.source_dir else "debian",
        }
        toolchain = self.toolchain
        for index, debian_version in enumerate(candidates):
            self.sink(
                f"qtrace: building QEMU {self.version_label} ({debian_version or 'local tree'}) "
                f"with {request.jobs} jobs"
            )
            spec = StageSpec(
                name="qemu",
                from_image=str(toolchain.tags[0] if toolchain.tags else toolchain.id),
                command=[
                    "bash",
                    f"{DOCKER_MOUNT}/{COMPILE_SCRIPT}",
                    str(request.jobs),
                    debian_version,
                ],
                to_repository=COMPILED_REPOSITORY,
                to_tag=self.version_label,
                labels={**labels, LABEL_DEBIAN_VERSION: debian_version or "local"},
                volumes=volumes,
            )
            try:
                run_stage(self.client, spec, self.run_id, self.sink)
                return
            except BuildError as exc:
                more = index + 1 < len(candidates)
                if exc.script_exit_code == SOURCE_UNAVAILABLE_EXIT and more:
                    self.sink(
                        f"qtrace: the archive does not serve qemu={debian_version}; "
                        "trying the next one"
                    )
                    continue
                if exc.script_exit_code == SOURCE_UNAVAILABLE_EXIT:
                    raise UnknownQemuVersion(
                        request.qemu_version, available_versions(source_versions)
                    ) from exc
                raise


def _ensure_toolchain(
    client: docker.DockerClient,
    events: BuildEvents,
    sink: Callable[[str], None],
    recipe: Path,
    toolchain_key: str,
    run_id: str,
) -> Image:
    tag = f"{TOOLCHAIN_REPOSITORY}:{toolchain_key}"
    events.stage("packages")
    try:
        image = client.images.get(tag)
        sink(f"toolchain image {tag}: found")
        return image
    except docker.errors.ImageNotFound:
        pass
    wheels = _download_wheels(sink)
    spec = StageSpec(
        name="packages",
        from_image=BASE_IMAGE,
        command=[
            "bash",
            f"{DOCKER_MOUNT}/install-deps.sh",
            f"{DOCKER_MOUNT}/packages.txt",
            WHEELS_MOUNT,
        ],
        to_repository=TOOLCHAIN_REPOSITORY,
        to_tag=toolchain_key,
        labels={},
        volumes={
            str(recipe): {"bind": DOCKER_MOUNT, "mode": "ro"},
            str(wheels): {"bind": WHEELS_MOUNT, "mode": "ro"},
        },
    )
    listed: list[str] = []

    def collect(line: str) -> None:
        sink(line)
        if line.startswith(_VERSION_LINE):
            listed.append(line[len(_VERSION_LINE) :].strip())

    run_stage(
        client, spec, run_id, collect, late_labels=lambda: {LABEL_SOURCE_VERSIONS: " ".join(listed)}
    )
    return client.images.get(tag)


def _download_wheels(sink: Callable[[str], None]) -> Path:
    """meson/pycotap wheels fetched by the host's pip (the container may lack its CA setup)."""
    target = cache_dir() / "wheels"
    target.mkdir(parents=True, exist_ok=True)
    if all(any(target.glob(f"{w.split('==')[0]}-{w.split('==')[1]}-*.whl")) for w in _WHEELS):
        return target
    sink(f"downloading {' '.join(_WHEELS)} with the host's pip")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(target), *_WHEELS],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        sink(line)
    if proc.returncode != 0:
        raise EnvironmentProblem(
            "Could not download meson and pycotap from PyPI (QEMU's configure needs meson >= 1.5).",
            hint="Check that pip can reach PyPI from this machine.",
        )
    return target
