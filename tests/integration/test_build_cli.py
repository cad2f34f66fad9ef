"""``qtrace build`` and ``qtrace doctor`` through the CLI, against the real daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from qtrace.image.builder import BuildResult
from qtrace.docker_env import KIND_LABEL, qtrace_containers

QTRACE = str(Path(sys.executable).with_name("qtrace"))


def _run(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QTRACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_warm_build_says_cached_quickly(debug_image: BuildResult) -> None:
    started = time.monotonic()
    proc = _run("build")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "cached" in proc.stdout
    print(f"warm qtrace build: {elapsed:.2f} s (including Python start-up)")


def test_unknown_version_lists_the_available_ones(debug_image: BuildResult) -> None:
    proc = _run("build", "--qemu-version", "9.9.9")
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "9.9.9" in message and "Available versions:" in message
    assert "10.2.2" in message and "7.2" in message
    assert "Traceback" not in proc.stderr + proc.stdout


def test_doctor_json_has_one_entry_per_check(debug_image: BuildResult) -> None:
    proc = _run("doctor", "--json", timeout_s=120)
    report = json.loads(proc.stdout)
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "docker daemon",
        "debug image",
        "gdb in image",
        "kvm",
        "free disk",
        "leftover containers",
        "kernel events",
    ]
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["docker daemon"]["status"] == "ok"
    assert by_name["debug image"]["status"] == "ok" and "10.2.2" in by_name["debug image"]["detail"]
    assert by_name["gdb in image"]["status"] == "ok"
    assert proc.returncode == (0 if report["ok"] else 3)


def test_ctrl_c_during_a_build_leaves_no_container_and_keeps_the_valid_image(
    debug_image: BuildResult, docker_client: docker.DockerClient
) -> None:
    before = docker_client.images.get(debug_image.image).id
    already = {c.id for c in qtrace_containers(docker_client)}
    proc = subprocess.Popen(
        [QTRACE, "build", "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(
                c.labels.get(KIND_LABEL, "").startswith("build-") and c.id not in already
                for c in qtrace_containers(docker_client)
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the build never started a container")
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not [c for c in qtrace_containers(docker_client) if c.id not in already]
    assert docker_client.images.get(debug_image.image).id == before, (
        "the interrupted build must not retag the image"
    )
