"""The Debian base image every qtrace image starts from, found or made without a registry.

Order of preference: ``debian:bookworm`` already in the local daemon; a pull (works on an
ordinary machine); a ``debootstrap --variant=minbase`` from Debian's archive imported with
the Docker API (works where no registry is reachable, as on our CI machines).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from qtrace.errors import BuildError, EnvironmentProblem

__all__ = ["BASE_REPOSITORY", "BASE_TAG", "BASE_IMAGE", "DEBIAN_MIRROR", "ensure_base_image"]

logger = logging.getLogger(__name__)

BASE_REPOSITORY = "debian"
BASE_TAG = "bookworm"
BASE_IMAGE = f"{BASE_REPOSITORY}:{BASE_TAG}"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def ensure_base_image(
    client: docker.DockerClient, log: Callable[[str], None], allow_pull: bool = True
) -> str:
    """Make sure ``debian:bookworm`` exists locally. Returns how: local, pulled or bootstrapped."""
    try:
        client.images.get(BASE_IMAGE)
        log(f"base image {BASE_IMAGE}: found locally")
        return "local"
    except docker.errors.ImageNotFound:
        pass
    if allow_pull:
        try:
            log(f"base image {BASE_IMAGE}: not local, trying to pull it")
            client.images.pull(BASE_REPOSITORY, tag=BASE_TAG)
            log(f"base image {BASE_IMAGE}: pulled")
            return "pulled"
        except docker.errors.APIError as exc:
            log(f"base image {BASE_IMAGE}: pull failed ({exc.explanation or exc}); bootstrapping")
    _bootstrap(client, log)
    return "bootstrapped"


def _bootstrap(client: docker.DockerClient, log: Callable[[str], None]) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EnvironmentProblem(
            f"No {BASE_IMAGE} image, no registry to pull it from, and no debootstrap to make one.",
            hint=(
                "apt-get install -y debootstrap (./scripts/setup does it), "
                "then run the build again."
            ),
        )
    with tempfile.TemporaryDirectory(prefix="qtrace-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {BASE_TAG} {rootfs} {DEBIAN_MIRROR}")
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", BASE_TAG, str(rootfs), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in (proc.stdout + proc.stderr).splitlines():
            log(line)
        if proc.returncode != 0:
            raise BuildError("base image", None, (proc.stdout + proc.stderr).splitlines()[-40:])
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(rootfs, arcname=".")
        log(f"importing the root filesystem as {BASE_IMAGE}")
        with tar_path.open("rb") as data:
            client.api.import_image_from_data(data, repository=BASE_REPOSITORY, tag=BASE_TAG)
