"""console_check.py BASE_URL USER PASSWORD [SCREENSHOT.png] — drives headless Chromium through
chromedriver (WebDriver over plain HTTP/JSON, no client library) against cdcsync's web console:
checks the rendered DOM (the pipeline, its state, a conflict row, the lag chart), clicks Pause,
signs in through the console's login dialog, and waits until the console shows the pipeline
paused. Exits 0, or 1 with what was wrong. Every wait is bounded and polls."""
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

base, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
shot = sys.argv[4] if len(sys.argv) > 4 else None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


port = free_port()
driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wd = f"http://127.0.0.1:{port}"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(wd + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)["value"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:500]!r}")
    except (urllib.error.URLError, ConnectionError) as e:  # chromedriver not listening yet
        raise RuntimeError(f"{method} {path}: {e}")


def wait(what, secs, fn):
    end = time.monotonic() + secs
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except RuntimeError as e:
            last = e
        time.sleep(0.2)
    raise SystemExit(f"FAIL: timed out after {secs}s waiting for {what} (last error: {last})")


try:
    wait("chromedriver", 20, lambda: call("GET", "/status")["ready"])
    profile = tempfile.mkdtemp(prefix="cdcsync-chromium-")
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", f"--user-data-dir={profile}"]}}}}
    sid = call("POST", "/session", caps)["sessionId"]
    S = f"/session/{sid}"
    call("POST", S + "/url", {"url": base + "/"})

    def find(css):
        els = call("POST", S + "/elements", {"using": "css selector", "value": css})
        return [list(e.values())[0] for e in els]

    def text(css):
        els = find(css)
        return call("GET", f"{S}/element/{els[0]}/text") if els else None

    def click(css):
        call("POST", f"{S}/element/{find(css)[0]}/click", {})

    def type_in(css, value):
        call("POST", f"{S}/element/{find(css)[0]}/value", {"text": value})

    row = 'tr[data-pipeline="main"]'
    wait("pipeline main listed as streaming", 30, lambda: text(row + " .state") == "streaming")
    print("rendered: main", text(row + " .state"), "lag", text(row + " .lag"), "events/s", text(row + " .rate"))
    conflict = wait("a conflict row", 20, lambda: text("#conflicts tr.conflict"))
    print("conflict row:", conflict)
    if "public.t" not in conflict or "main" not in conflict:
        raise SystemExit(f"FAIL: the conflict row does not show the recorded conflict: {conflict!r}")
    wait("the lag chart's line for main", 20, lambda: find('#chart polyline[data-pipeline="main"]'))
    if not find("title") or call("GET", S + "/title") != "cdcsync":
        raise SystemExit("FAIL: the page title is not cdcsync")
    if shot:
        png = call("GET", S + "/screenshot")
        open(shot, "wb").write(base64.b64decode(png))
        print("screenshot:", shot)

    click(row + " button.pause")
    wait("the login dialog", 10, lambda: call("GET", f"{S}/element/{find('#login')[0]}/attribute/open") is not None)
    type_in("#login-user", user)
    type_in("#login-password", password)
    click("#login-ok")
    wait("main shown paused in the console", 60, lambda: text(row + " .state") == "paused")
    wait("a Resume button", 10, lambda: find(row + " button.resume"))
    print("console shows main paused, signed in:", text("#who"))
    call("DELETE", S)
finally:
    driver.terminate()
    driver.wait(10)
