#!/usr/bin/env python
"""The book's widgets in a real front end: JupyterLab in headless Chromium (Selenium).

tests/test_widgets.py sets the widgets' ``.value`` in Python; this script checks the
part only a browser runs: the slider view, the comm round trip to the kernel, and the
figure and player the kernel sends back. It

1. writes a one-cell notebook into a temporary directory: chapter 2's ``MixerWidget``
   over two test tones ("bass" 220 Hz, "keys" 330 Hz), shown with ``show_widget``;
2. starts ``jupyter lab`` on a free local port with a random token (settings,
   workspaces and runtime files in the temporary directory);
3. opens the notebook in headless Chromium (Debian's ``chromium`` and
   ``chromium-driver``), runs it and waits for the widget's figure (``<img>``) and
   player (``<audio>``) in its output area;
4. moves the first track's pan slider twice with the keyboard (right arrow: one step
   to the right; Home: hard left; one change each) and after each move waits until the
   figure and the player were redrawn, then checks that the PNG and the WAV data
   changed and that the audio moved to the side the pan points to (RMS of the right
   minus the left channel, dB: > 0 after the arrow, < 0 after Home);
5. prints the time of each step and one ``PASS``/``FAIL`` line, exits 0/1, and always
   stops the browser and the server (which shuts the kernel down).

Widgets are found by stable things only: ipywidgets' slider classes, the slider
whose description names the parameter (``pan``), the ``src`` of the ``<img>`` and of
the ``<audio>`` (its ``<source>``) in the widget's output area; not by pixel layout.

Usage: ``.venv/bin/python scripts/check_widgets_frontend.py [--timeout 90] [--screenshot out.png]``
(45-60 s on 2 busy cores, of which 10-25 s start the kernel and import torch; run by
tests/test_widgets_frontend.py).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CELL = """\
import numpy as np
from diffmst_lite.book.notebook import show_widget
from diffmst_lite.book.widgets import MixerWidget

SR = 22050
t = np.arange(SR) / SR  # 1 s
tones = 0.3 * np.sin(2 * np.pi * np.array([[220.0], [330.0]]) * t)  # (2 tracks, SR)
show_widget(MixerWidget(tones, ["bass", "keys"], SR))
"""

# The first slider whose description (label text or tooltip) names the parameter
# "pan", and the ipywidgets.Output area of the widget it belongs to (the nearest
# ancestor that holds one): the figure and the player are its <img> and <audio>.
FIND_PAN_JS = """
const nb = document.querySelector('.jp-Notebook');
const text = (s) => {
  const label = s.querySelector('.widget-label');
  return label ? (label.textContent + ' ' + (label.title || '') + ' ' + (s.title || '')) : '';
};
const slider = nb && [...nb.querySelectorAll('.widget-slider')].find((s) => /\\bpan\\b/i.test(text(s)));
let box = slider;
while (box && !box.querySelector('.widget-output')) box = box.parentElement;
const output = box && box.querySelector('.widget-output');
"""

STATE_JS = FIND_PAN_JS + """
if (!slider || !output) return null;
const img = output.querySelector('img');
const audio = output.querySelector('audio');
const source = audio && audio.querySelector('source');
const readout = slider.querySelector('.widget-readout');
return {
  pan: readout ? readout.textContent.trim() : '?',
  img: img ? img.getAttribute('src') : null,
  audio: audio ? (audio.getAttribute('src') || (source && source.getAttribute('src')) || '') : null,
};
"""

FOCUS_PAN_JS = FIND_PAN_JS + """
const handle = slider && slider.querySelector('.noUi-handle');
if (handle) handle.focus();
return !!handle && document.activeElement === handle;
"""

# Run every cell through JupyterLab's own command (window.jupyterapp is exposed with
# --LabApp.expose_app_in_browser); resolves when the cells ran (false: a cell raised).
RUN_ALL_JS = """
const done = arguments[arguments.length - 1];
(async () => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  let panel = null;
  while (!panel) {
    for (const w of app.shell.widgets('main')) if (w.sessionContext && w.content) panel = w;
    if (!panel) await new Promise((r) => setTimeout(r, 100));
  }
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  const ok = await app.commands.execute('notebook:run-all-cells');
  done({ok: ok !== false});
})().catch((e) => done({ok: false, error: String(e)}));
"""

ERRORS_JS = """
return [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map((e) => e.textContent).join('\\n').slice(-3000);
"""


class CheckFailed(Exception):
    """A step of the check failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``probe()`` until it returns something truthy; raise :class:`CheckFailed` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def audio_balance_db(src: str) -> float:
    """RMS of the right minus the left channel (dB) of an embedded player source,
    ``data:audio/<format>;base64,...`` (the book's players are FLAC; WAV decodes too)."""
    import soundfile as sf

    if not (src.startswith("data:audio/") and ";base64," in src):
        raise CheckFailed(f"the player's src is not embedded audio: {src[:60]!r}")
    x, _ = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float64", always_2d=True)
    if x.shape[1] != 2:
        raise CheckFailed(f"expected stereo audio, got {x.shape[1]} channels")
    left, right = np.sqrt(np.mean(x**2, axis=0)) + 1e-9
    return float(20 * np.log10(right / left))


def write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def start_server(tmp: Path, port: int, token: str) -> subprocess.Popen:
    """``jupyter lab`` (this interpreter's) serving ``tmp``, its own process group, log in ``tmp/server.log``."""
    env = dict(os.environ)
    env.pop("DIFFMST_BOOK_BUILD", None)  # show_widget displays nothing while the book builds
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces")):
        env[var] = str(tmp / sub)
    news = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "Would you like news?" toast over the page
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
           "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:  # CI runs as root
        cmd.append("--allow-root")
    with open(tmp / "server.log", "wb") as log:
        return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def server_up(base: str, token: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_server(proc: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to shut down (it stops its kernels); signal its process group if it does not."""
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def start_browser(tmp: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1200", f"--user-data-dir={tmp / 'chromium'}", "--no-first-run",
                "--disable-background-networking", "--disable-extensions"):
        options.add_argument(arg)
    # explicit driver path: Selenium Manager (which would download a driver) is not used
    return webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log")),
                            options=options)


def missing_tools() -> list[str]:
    """What this check needs and cannot find (empty when it can run)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    return missing + [f"python package {m}" for m in ("selenium", "jupyterlab") if importlib.util.find_spec(m) is None]


def run_check(tmp: Path, timeout: float, screenshot: Path | None) -> dict[str, Any]:
    """The whole check in ``tmp``; returns the measurements, raises :class:`CheckFailed`."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    times: dict[str, Any] = {}
    start = time.monotonic()
    write_notebook(tmp / "widget.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    server = start_server(tmp, port, token)
    driver = None
    try:
        wait_for("the Jupyter server", lambda: server.poll() is not None or server_up(base, token), timeout)
        if server.poll() is not None:
            raise CheckFailed(f"jupyter lab exited with code {server.returncode}")
        times["server_s"] = time.monotonic() - start

        t = time.monotonic()
        driver = start_browser(tmp)
        driver.set_script_timeout(2 * timeout)
        driver.get(f"{base}/lab/tree/widget.ipynb?token={token}")
        wait_for("JupyterLab (window.jupyterapp)", lambda: driver.execute_script("return !!window.jupyterapp"),
                 timeout)
        times["lab_s"] = time.monotonic() - t

        t = time.monotonic()
        ran = driver.execute_async_script(RUN_ALL_JS)
        if not ran.get("ok"):
            raise CheckFailed(f"running the notebook failed: {ran.get('error') or driver.execute_script(ERRORS_JS)}")
        state = lambda: driver.execute_script(STATE_JS) or {}  # noqa: E731
        first = wait_for("the widget's pan slider, figure and player",
                         lambda: (s := state()) and s["img"] and s["audio"] and s, timeout)
        times["run_s"] = time.monotonic() - t
        if not first["img"].startswith("data:image/png;base64,"):
            raise CheckFailed(f"the figure is not an embedded PNG: {first['img'][:60]!r}")

        before, readouts, moves = first, [first["pan"]], []
        for key, name, sign in ((Keys.ARROW_RIGHT, "ArrowRight", +1), (Keys.HOME, "Home", -1)):
            if not driver.execute_script(FOCUS_PAN_JS):
                raise CheckFailed("could not focus the pan slider's handle")
            t = time.monotonic()
            ActionChains(driver).send_keys(key).perform()
            after = wait_for(f"a new figure and player after {name} on the pan slider",
                             lambda: (s := state()) and s["img"] and s["audio"] and s["img"] != before["img"]
                             and s["audio"] != before["audio"] and s, timeout)
            seconds = time.monotonic() - t
            balance = audio_balance_db(after["audio"])
            readouts.append(after["pan"])
            moves.append({"key": name, "pan": after["pan"], "update_s": seconds, "right_minus_left_db": balance})
            if sign * balance <= 0.01:  # one step right (>= 0.08 dB for a pan step of 0.01); hard left: -5.8 dB
                raise CheckFailed(f"after {name} (pan {after['pan']}) the audio should lean "
                                  f"{'right' if sign > 0 else 'left'}: right - left = {balance:+.2f} dB")
            before = after
        times["moves"] = moves
        times["pan_readouts"] = readouts
        return times
    finally:
        if driver is not None:
            try:
                if screenshot:  # the page as it is at the end, passed or failed
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    driver.save_screenshot(str(screenshot))
            finally:
                driver.quit()
        stop_server(server, base, token)
        times["total_s"] = time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each step (default 90)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page here (after the check)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, notebook)")
    args = parser.parse_args(argv)
    # SIGTERM (a timeout of the caller) unwinds like Ctrl-C, so the browser and the server are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    missing = missing_tools()
    if missing:
        print(f"widgets frontend: FAIL: missing {', '.join(missing)} "
              "(run scripts/install_system_deps.sh and pip install -r requirements.txt)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="widgets-frontend-"))
    try:
        times = run_check(tmp, args.timeout, args.screenshot)
    except Exception as error:  # noqa: BLE001 - every failure is reported the same way
        log = (tmp / "server.log").read_text(errors="replace")[-2000:] if (tmp / "server.log").exists() else ""
        print(f"--- jupyter lab log (tail) ---\n{log}" if log else "", file=sys.stderr)
        print(f"widgets frontend: FAIL: {type(error).__name__}: {error}")
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    moves = ", ".join(f"{m['key']} -> pan {m['pan']}: figure and player updated in {m['update_s']:.2f} s, "
                      f"right - left {m['right_minus_left_db']:+.1f} dB" for m in times["moves"])
    print(json.dumps(times, default=float, ensure_ascii=False))
    print(f"widgets frontend: PASS in {times['total_s']:.1f} s (server {times['server_s']:.1f} s, "
          f"JupyterLab {times['lab_s']:.1f} s, notebook run and first render {times['run_s']:.1f} s; "
          f"pan {times['pan_readouts'][0]}; {moves})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
