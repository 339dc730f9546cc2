"""A real browser for the HTML tests: headless Chromium driven over the Chrome DevTools protocol.

The protocol runs over a WebSocket (RFC 6455) on the loopback interface; this module speaks it
with the standard library (one socket, masked text frames out, unmasked frames in), so the tests
need no package beyond Chromium itself. :func:`find_chromium` returns None when no browser is
installed (the tests then skip and say why).

:class:`Browser` starts one Chromium with a fresh profile and every background service off;
:meth:`Browser.load` opens a page in it and returns the DOM after the load event, the console
messages and uncaught exceptions, and every request the page made.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
START_TIMEOUT = 30.0  # seconds Chromium may take to open its DevTools port
LOAD_TIMEOUT = 30.0  # seconds a page may take to fire its load event


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: $ADVGRAD_CHROMIUM, else the first on PATH; None if none."""
    given = os.environ.get("ADVGRAD_CHROMIUM")
    if given:
        return given if shutil.which(given) else None
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


class WebSocket:
    """The client side of RFC 6455, just enough for the DevTools protocol: text frames."""

    def __init__(self, url: str, timeout: float):
        assert url.startswith("ws://"), url
        host_port, _, path = url[len("ws://") :].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("the browser closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"handshake refused: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            data += chunk
        return data

    def receive(self) -> str:
        """The next text message (continuation frames joined; pings answered)."""
        message = b""
        while True:
            first, second = self._exactly(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exactly(8))[0]
            payload = self._exactly(n)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping: answer with a pong of the same payload
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0" + payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("the browser closed the WebSocket")
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Loaded:
    """A page after its load event: the DOM as HTML, console messages (level, text), uncaught
    exceptions, and the URL of every request the page made (its own file included)."""

    url: str
    dom: str
    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions."""
        return [t for level, t in self.console if level in ("error", "assert")] + self.exceptions

    @property
    def fetched(self) -> list[str]:
        """Requests beyond the page itself and its own ``data:`` URIs: what would leave the page."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class Browser:
    """One headless Chromium with a fresh profile; :meth:`load` opens pages in its first tab."""

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="advgrad-chromium-")
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._port()
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=START_TIMEOUT))
        target = next(p for p in pages if p.get("type") == "page")
        self.ws = WebSocket(target["webSocketDebuggerUrl"], timeout=LOAD_TIMEOUT)
        self.next_id = 0
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _port(self) -> int:
        """The DevTools port Chromium chose, from the file it writes into its profile."""
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.05)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, params: dict | None = None, events: list | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile go to ``events``."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if events is not None and "method" in message:
                events.append(message)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def load(self, path: str | os.PathLike) -> Loaded:
        """Open ``path`` and wait for its load event; the DOM is read after the page's script ran.
        Requests count when they belong to this navigation (its ``loaderId``), not to an earlier page."""
        url = Path(path).resolve().as_uri()
        events: list[dict] = []
        navigation = self.call("Page.navigate", {"url": url}, events)
        deadline = time.monotonic() + LOAD_TIMEOUT
        while not any(e["method"] == "Page.loadEventFired" for e in events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            events.append(json.loads(self.ws.receive()))
        dom = self.evaluate("document.documentElement.outerHTML")
        self.call("Runtime.evaluate", {"expression": "0"}, events)  # collect the events of the load
        loaded = Loaded(url, dom)
        for e in events:
            params = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled":
                words = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                loaded.console.append((params.get("type", ""), words))
            elif e["method"] == "Log.entryAdded":
                entry = params.get("entry", {})
                loaded.console.append((entry.get("level", ""), entry.get("text", "")))
            elif e["method"] == "Runtime.exceptionThrown":
                loaded.exceptions.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif e["method"] == "Network.requestWillBeSent" and params.get("loaderId") == navigation.get("loaderId"):
                loaded.requests.append(params.get("request", {}).get("url", ""))
        return loaded

    def screenshot(self, path: str | os.PathLike, width: int = 1000, height: int = 1400) -> None:
        """A PNG of the page's top ``width`` × ``height`` CSS pixels."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"})
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
