"""A real Label Studio server for tests: started on 127.0.0.1, offline, in a temporary folder.

Label Studio is not a dependency of the project (its SDK pins numpy below ours): it lives in its
own virtualenv (``.ci/labelstudio.sh`` makes one) and is found through ``LABEL_STUDIO_BIN``, else
``label-studio`` on PATH. Absent: the test is skipped locally and fails in CI (``CI=true``).

Start-up. A fresh Label Studio database needs ~260 Django migrations (about a minute of CPU), so
the migrated, still empty database is made once and copied for every server: from
``<venv of the binary>/dataset_platform-labelstudio-template/`` when ``.ci/labelstudio.sh``
prepared it, else from a cache in the system temp folder keyed by the binary (built on first use
by ``label-studio version``, which migrates and exits). A server then starts in a few seconds.

Offline. Sentry, usage analytics, the PyPI version check and converter downloads are switched
off, and every HTTP(S) proxy variable points at a closed local port (with 127.0.0.1 exempt), so
any request that would still leave the machine fails at once instead of reaching the internet.
HOME and the XDG folders point into the temporary folder: nothing is written outside it.

The admin user's legacy API token is used (``Authorization: Token ...``; Label Studio 1.23 keeps
legacy tokens off unless the organisation enables them: ``--enable-legacy-api-token``). Further
annotators join through the organisation's invite link, like a person would, and read their own
token from ``/api/current-user/token``.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TEMPLATE_DIRNAME = "dataset_platform-labelstudio-template"
DB_NAME = "label_studio.sqlite3"
START_TIMEOUT_S = 120.0
TEMPLATE_TIMEOUT_S = 600.0


def find_label_studio() -> str | None:
    """The Label Studio executable: ``$LABEL_STUDIO_BIN``, else ``label-studio`` on PATH."""
    env = os.environ.get("LABEL_STUDIO_BIN")
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else None
    return shutil.which("label-studio")


def require_label_studio() -> str:
    exe = find_label_studio()
    if exe is None:
        where = os.environ.get("LABEL_STUDIO_BIN")
        msg = (f"LABEL_STUDIO_BIN={where} is not an executable file" if where else
               "Label Studio is not installed: run .ci/labelstudio.sh and set LABEL_STUDIO_BIN to the path it prints")
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI must run the Label Studio round trip)")
        pytest.skip(msg)
    return exe


def offline_env(root: Path, data_dir: Path) -> dict[str, str]:
    """The environment of a Label Studio process: our settings, no outbound network."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO_", "HEARTEX_", "DJANGO_")) and k.lower() not in _PROXY_VARS}
    home = root / "home"
    for sub in ("data", "config", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, a request fails at once
    env.update({
        "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "SECRET_KEY": secrets.token_hex(32),
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "CONVERTER_DOWNLOAD_RESOURCES": "false",
        "FEATURE_FLAGS_OFFLINE": "true",
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # people join only through the organisation's invite link
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
        "all_proxy": dead, "ALL_PROXY": dead,
        "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
    })
    return env


_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def template_db(exe: str) -> Path:
    """A migrated, empty Label Studio database for this executable (made once, then reused)."""
    venv_template = Path(exe).resolve().parent.parent / TEMPLATE_DIRNAME / DB_NAME
    if venv_template.is_file():
        return venv_template
    st = Path(exe).resolve().stat()
    key = hashlib.sha256(f"{Path(exe).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"dataset_platform-labelstudio-{key}"
    db = cache / DB_NAME
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a parallel test process waits for the first
        if not db.is_file():
            build_template(exe, db)
    return db


def build_template(exe: str, dest: Path) -> None:
    """Migrate a new database with ``label-studio version`` (it migrates, prints and exits) and
    move it to ``dest`` atomically."""
    with tempfile.TemporaryDirectory(prefix="ls-template-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        proc = subprocess.run([exe, "version"], env=offline_env(root, data), capture_output=True, text=True, check=False,
                              timeout=TEMPLATE_TIMEOUT_S, cwd=root)
        if proc.returncode != 0 or not (data / DB_NAME).is_file():
            raise RuntimeError(f"label-studio version failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        tmp_dest = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(data / DB_NAME, tmp_dest)
        os.replace(tmp_dest, dest)


class LabelStudioError(RuntimeError):
    pass


@dataclass
class LabelStudio:
    """A running server: ``url`` and the admin's ``token``; ``api`` calls its REST API."""

    url: str
    token: str
    admin: str
    log: Path
    _opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(urllib.request.ProxyHandler({})))

    def api(self, method: str, path: str, body=None, *, token: str | None = None, timeout: float = 30.0):
        """JSON in, JSON out; a non-2xx answer raises with Label Studio's error body."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Token {token or self.token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with self._opener.open(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise LabelStudioError(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def invite(self, email: str, password: str) -> str:
        """Sign ``email`` up through the organisation's invite link (the form a person fills in)
        and return the new user's API token."""
        link = self.api("GET", "/api/invite")["invite_url"]
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar))
        signup = self.url + link
        with opener.open(signup, timeout=30) as r:
            page = r.read().decode()
        m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if not m:
            raise LabelStudioError("sign-up page without a CSRF token")
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": m.group(1), "email": email, "password": password}).encode()
        req = urllib.request.Request(signup, data=form, method="POST", headers={"Referer": signup})
        with opener.open(req, timeout=30) as r:
            r.read()
        with opener.open(self.url + "/api/current-user/token", timeout=30) as r:
            token = json.loads(r.read())["token"]
        who = self.api("GET", "/api/current-user/whoami", token=token)
        if who.get("email") != email:
            raise LabelStudioError(f"sign-up of {email} did not log in as that user: {who}")
        return token


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/health", timeout=2) as r:
            return r.status == 200 and b"UP" in r.read()
    except (urllib.error.URLError, OSError):
        return False


def start(exe: str, root: Path) -> tuple[subprocess.Popen, LabelStudio]:
    """Start Label Studio in ``root`` (a fresh folder) and wait until /health answers."""
    data = root / "data"
    data.mkdir(parents=True)
    shutil.copyfile(template_db(exe), data / DB_NAME)
    admin, password, token = "admin@example.test", secrets.token_urlsafe(12), secrets.token_hex(20)
    port = _free_port()
    log = root / "label-studio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
             # "--password=<p>": a generated password may start with "-", which argparse would read as an option
             "--username", admin, f"--password={password}", "--user-token", token, "--enable-legacy-api-token"],
            env=offline_env(root, data), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
        )
    server = LabelStudio(url=f"http://127.0.0.1:{port}", token=token, admin=admin, log=log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabelStudioError(f"Label Studio exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        # Label Studio moves to the next port when its port is taken: read the one it chose
        m = re.search(r"Starting development server at (http://127\.0\.0\.1:\d+)/", log.read_text(errors="replace"))
        if m:
            server.url = m.group(1)
            if _healthy(server.url):
                return proc, server
        time.sleep(0.25)
    stop(proc)
    raise LabelStudioError(f"Label Studio not up after {START_TIMEOUT_S:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A running Label Studio (one per test module), stopped afterwards."""
    exe = require_label_studio()
    root = tmp_path_factory.mktemp("label-studio")
    proc, server = start(exe, root)
    try:
        yield server
    finally:
        stop(proc)
