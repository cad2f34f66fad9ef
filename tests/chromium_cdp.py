"""Headless Chromium driven over the DevTools protocol, for tests that open a page for real.

Chromium is started with ``--remote-debugging-pipe``: the protocol runs over two pipes
(Chromium reads commands on fd 3 and writes replies on fd 4, NUL-terminated JSON), so no
port is opened and nothing but the standard library is needed. :class:`Chromium` owns the
process (a context manager that always ends it); :class:`Page` is one tab: navigate,
evaluate JavaScript, set a file input, press a key, take a screenshot.

The flags are those this machine needs (ENVIRONMENT.md): no sandbox as root, no GPU, and no
background networking (the network is closed; Chromium's own connections would only fail).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "Chromium", "Page", "CdpError", "chromium_binary"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class CdpError(RuntimeError):
    """A protocol command failed, or Chromium did not answer in time."""


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (scripts/setup installs it)"
    return binary


class Chromium:
    """One headless Chromium process with a fresh profile in ``profile_dir``.

    ``local_state`` is written as the profile's ``Local State`` before the start (browser-wide
    preferences).
    """

    def __init__(
        self,
        profile_dir: Path,
        *,
        window: tuple[int, int] = (1600, 1000),
        local_state: dict[str, Any] | None = None,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        if local_state is not None:
            (profile_dir / "Local State").write_text(json.dumps(local_state), encoding="utf-8")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def plumb() -> None:  # in the child: the pipes become fds 3 and 4, inheritable
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self._log = (profile_dir / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [
                chromium_binary(),
                *CHROMIUM_FLAGS,
                *extra_flags,
                f"--user-data-dir={profile_dir}",
                f"--window-size={window[0]},{window[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            close_fds=False,
            preexec_fn=plumb,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise CdpError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise CdpError(f"Chromium closed the pipe (exit {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout_s: float = 60,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply (events meanwhile go to :attr:`events`)."""
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            request["sessionId"] = session
        try:
            os.write(self._to_chrome, json.dumps(request).encode() + b"\0")
        except BrokenPipeError:
            raise CdpError(f"Chromium is gone (exit {self.process.poll()}); see {self._log.name}")
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        for domain in ("Page", "Runtime", "DOM"):
            page.send(f"{domain}.enable")
        return page


class Page:
    """One tab of a :class:`Chromium`."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigating to {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(f"{expression[:80]}...: {details.get('exception', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60, what: str = "") -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression)
            except CdpError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.25)
        raise CdpError(f"timed out waiting for {what or expression[:80]} (last: {last!r})")

    def set_input_files(self, element_expression: str, files: list[Path]) -> None:
        """Give the file input ``element_expression`` evaluates to these files, as a user
        choosing them would."""
        handle = self.send("Runtime.evaluate", {"expression": element_expression})["result"]
        if handle.get("subtype") == "null" or "objectId" not in handle:
            raise CdpError(f"no element for {element_expression[:80]}")
        self.send(
            "DOM.setFileInputFiles",
            {"files": [str(f) for f in files], "objectId": handle["objectId"]},
        )

    def press(self, key: str) -> None:
        """Type one printable key."""
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "text": key if kind == "keyDown" else ""}
            self.send("Input.dispatchKeyEvent", params)

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
