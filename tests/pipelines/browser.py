"""Headless Chromium driven over the DevTools protocol (a websocket, no browser-automation package):
open a page, wait for text, click, read the DOM, take a screenshot — what a person does in the UI."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import subprocess
import time
from pathlib import Path

import requests
from websockets.sync.client import connect

# Headless, no sandbox (containers), nothing fetched in the background, no first-run pages.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--disable-background-networking", "--no-first-run"]


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, chromium: str, profile: Path, width: int = 1600, height: int = 2000) -> None:
        self.proc = subprocess.Popen(
            [chromium, *HEADLESS, f"--window-size={width},{height}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if found := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(found.group(1))
        assert port, "Chromium did not open its DevTools port"
        pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        self.opened = contextlib.ExitStack()  # websockets wants its connection entered as a context
        self.ws = self.opened.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024))
        self.ids = itertools.count(1)
        self.events: list[dict] = []  # what the page reported between replies (Network.* once enabled)

    def send(self, method: str, **params: object) -> dict:
        call = next(self.ids)
        self.ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=120))
            if reply.get("id") == call:
                assert "error" not in reply, reply
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def requested_urls(self) -> list[str]:
        """Every URL the page asked for since `Network.enable`."""
        self.js("0")  # read what is pending
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def js(self, expression: str) -> object:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout_s: float = 60) -> object:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if value := self.js(f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"):
                return value
            time.sleep(0.5)
        raise AssertionError(f"not true within {timeout_s} s: {expression}\npage text: "
                             f"{str(self.js('document.body && document.body.innerText'))[:3000]}")

    def click_text(self, text: str, within: str = "document") -> None:
        """A real mouse click on the innermost element showing exactly `text` (inside the first element
        matching the JS expression `within`)."""
        box = self.wait_for(f"""(() => {{
            const scope = {within};
            const hits = [...scope.querySelectorAll('*')]
                .filter(e => e.innerText && e.innerText.trim() === {json.dumps(text)});
            const el = hits[hits.length - 1]; el.scrollIntoView({{block: 'center'}});
            const r = el.getBoundingClientRect(); return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()""")
        self.click_at(box["x"], box["y"])

    def click_at(self, x: float, y: float) -> None:
        """A real mouse click at page pixel (x, y) of the viewport."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Choose files in an <input type=file>, as a person does in the file dialog (fires `change`)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(p) for p in paths], nodeId=node)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self.opened.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
