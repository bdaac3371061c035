"""The Dagster UI in a real browser: the graph, its lineage, a run launched by clicking, its checks.

Starts ``dagster dev -w workspace.yaml`` (webserver + daemon, as ``dataset-platform ui`` does) on
127.0.0.1 against a temporary workdir and the DAGSTER_HOME a new work folder gets, drives Debian's
chromium with Playwright (never a downloaded browser) and materialises the whole demo graph from
the "Materialize all" button. Then what a newcomer sees: no community dialog, the column
descriptions of ``contracts/schema.py``, rounded floats, the dataset card rendered, and the GX
Data Docs styled with the network blocked. Screenshots of every step land in ``$TEST_ARTIFACTS_DIR/ui_browser/`` (default
``tests/artifacts/ui_browser/``).

Needs ``pip install playwright`` (the ``test`` extra) and ``apt-get install chromium`` (or
``CHROMIUM_BIN``); without them the test is skipped, and fails when ``CI=true``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dataset_platform.config import demo_config_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

REPO = Path(__file__).resolve().parents[1]
# the layers the README promises; the full list comes from the Definitions
REQUIRED_ASSETS = {"raw_pages", "extracted_documents", "cleaned_documents", "deduplicated_documents",
                   "labelled_documents", "dataset_release"}
SERVER_START_S = 300        # webserver answering /server_info
CODE_LOCATION_S = 300       # code location loaded
RUN_DEADLINE_S = 20 * 60    # the demo run takes about a minute (in-process executor); generous for a busy machine
UI_TIMEOUT_MS = 60_000      # one UI action or expectation
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-pings",
    "--no-proxy-server",
    "--dns-prefetch-disable",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


# ------------------------------------------------------------------------------------ helpers


def _missing(what: str, install: str) -> None:
    """Skip when a browser dependency is absent; in CI (CI=true) fail and say what to install."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test needs {what} in CI (CI=true); install it: {install}")
    pytest.skip(f"the browser test needs {what}; install it: {install}")


def _chromium() -> str:
    env = os.environ.get("CHROMIUM_BIN")
    if env:
        if os.access(env, os.X_OK):
            return env
        _missing(f"chromium, but CHROMIUM_BIN={env} is not an executable", "apt-get install -y chromium, or fix CHROMIUM_BIN")
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing("Debian's chromium", "apt-get install -y chromium (or set CHROMIUM_BIN)")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# urllib without any proxy from the environment: only the local server is contacted
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 10) -> bytes:
    with _HTTP.open(url, timeout=timeout) as r:
        return r.read()


def _graphql(base: str, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
    req = urllib.request.Request(base + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with _HTTP.open(req, timeout=timeout) as r:
        body = json.loads(r.read())
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def _tail(path: Path, n: int = 80) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _pids_with_env(var: str, value: str) -> list[int]:
    """Processes carrying ``var=value`` in their environment (Linux /proc; our unique temp path)."""
    needle = f"{var}={value}".encode()
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except (OSError, ValueError):
            continue
    return [pid for pid in out if pid != os.getpid()]


def _stop_server(proc: subprocess.Popen, workdir: Path) -> None:
    """Terminate the whole process group (webserver, daemon, code server, run workers, crawl)."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    try:
        os.killpg(pgid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:  # whatever is left of the group, the leader included (dagster dev may outlive SIGTERM)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    # anything of ours that left the group (recognised by our unique temporary workdir)
    for pid in _pids_with_env("DATASET_PLATFORM_WORKDIR", str(workdir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _node_shows(name: str, text: str) -> bool:
    """Does a graph node's text show asset ``name``? Zoomed out, long names are cut in the middle."""
    text = text.strip()
    if text == name or text.startswith(name + "Latest event"):
        return True
    head, sep, tail = text.partition("…")
    return bool(sep) and len(head) >= 3 and len(name) > len(head) + len(tail) \
        and name.startswith(head) and name.endswith(tail) and "…" not in tail


def _shown_assets(page, names) -> set[str]:
    """Asset names drawn as nodes of the graph currently on screen."""
    texts = page.locator("svg foreignObject").evaluate_all("els => els.map(e => e.textContent || '')")
    return {n for n in names if any(_node_shows(n, t) for t in texts)}


def _wait_for_nodes(page, names, expected: set[str], timeout_s: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout_s
    shown: set[str] = set()
    while time.monotonic() < deadline:
        shown = _shown_assets(page, names)
        if shown >= expected:
            page.wait_for_timeout(1000)  # let the layout settle, then read again
            return _shown_assets(page, names)
        page.wait_for_timeout(500)
    return shown


RUN_QUERY = """
query($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status tags { key value } }
  ... on PythonError { message } } }
"""

EVENTS_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId, limit: 100000) { __typename
  ... on EventConnection { events { __typename
    ... on MessageEvent { message level stepKey }
    ... on ErrorEvent { error { message stack causes { message stack } } }
    ... on MaterializationEvent { assetKey { path } }
    ... on AssetCheckEvaluationEvent { evaluation { checkName success severity assetKey { path } } } } }
  ... on PythonError { message } } }
"""


def _run_events(base: str, run_id: str) -> list[dict]:
    data = _graphql(base, EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    assert data["__typename"] == "EventConnection", data
    return data["events"]


def _report_failure(base: str, run_id: str) -> str:
    """The run's error events and failed checks, for the failure message."""
    lines = []
    try:
        for e in _run_events(base, run_id):
            if e.get("error"):
                err = e["error"]
                lines.append(f"{e['__typename']} step={e.get('stepKey')}: {e.get('message')}\n  {err.get('message')}"
                             f"\n{''.join(err.get('stack') or [])}")
                for c in err.get("causes") or []:
                    lines.append(f"  caused by: {c.get('message')}")
            elif e["__typename"] == "AssetCheckEvaluationEvent" and not e["evaluation"]["success"]:
                ev = e["evaluation"]
                lines.append(f"check failed: {'/'.join(ev['assetKey']['path'])}:{ev['checkName']} ({ev['severity']})")
            elif e.get("level") == "ERROR":
                lines.append(f"{e['__typename']} step={e.get('stepKey')}: {e.get('message')}")
    except (OSError, urllib.error.URLError, AssertionError, KeyError, TypeError, ValueError) as exc:
        # the report must not hide the failure it reports
        lines.append(f"(could not read the run's events: {exc})")
    return "\n".join(lines) or "(no error events)"


# ------------------------------------------------------------------------------------- fixture


@pytest.fixture
def chromium_bin():
    """Playwright importable and chromium present (checked before a server is started)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright's Python package", "pip install -e '.[test]' (playwright); no `playwright install` needed")
    return _chromium()


@pytest.fixture
def artifacts() -> Path:
    """Screenshots and the server log: ``$TEST_ARTIFACTS_DIR/ui_browser`` or ``tests/artifacts/ui_browser``."""
    base = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / "tests" / "artifacts")
    d = base / "ui_browser"
    d.mkdir(parents=True, exist_ok=True)
    for old in [*d.glob("*.png"), *d.glob("*.log")]:  # only this test's files of an earlier run
        old.unlink()
    return d


@pytest.fixture
def dagster_ui(chromium_bin, artifacts, tmp_path, monkeypatch):
    """``dagster dev`` on a free 127.0.0.1 port with a temporary workdir, and the DAGSTER_HOME that
    ``dataset-platform ui`` prepares in a new work folder (its ``dagster.yaml``)."""
    from dataset_platform.cli import _prepare_instance
    from dataset_platform.workdir import Workdir

    workdir = tmp_path / "workdir"
    monkeypatch.setenv("DAGSTER_HOME", "")  # (_prepare_instance sets it; restored after the test)
    home = _prepare_instance(Workdir.at(workdir).ensure())
    assert home == (workdir / "dagster_home").resolve()
    # it turns the "Join the Dagster community" dialog off: the dialog pops up a second after any
    # page loads and closes whatever menu is open (it failed a CI run that way)
    assert "nux:\n  enabled: false" in (home / "dagster.yaml").read_text(encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    workspace = REPO / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.exists() else ["-m", "dataset_platform.definitions"]
    env = dict(os.environ, DATASET_PLATFORM_CONFIG=str(demo_config_path()), DATASET_PLATFORM_WORKDIR=str(workdir),
               DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    log_path = tmp_path / "dagster-dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", *target, "-h", "127.0.0.1", "-p", str(port)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"dagster dev exited with {proc.returncode}:\n{_tail(log_path)}")
                try:
                    info = json.loads(_get(base + "/server_info"))
                    break
                except (urllib.error.URLError, OSError, ValueError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"the webserver did not answer {base}/server_info within {SERVER_START_S}s:\n{_tail(log_path)}")
                    time.sleep(1)
            print(f"dagster-webserver {info.get('dagster_webserver_version')} at {base}, DAGSTER_HOME={home}")
            deadline = time.monotonic() + CODE_LOCATION_S
            while True:
                ws = _graphql(base, """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                    name loadStatus locationOrLoadError { __typename ... on PythonError { message stack } } } } } }""")
                entries = ws["workspaceOrError"].get("locationEntries") or []
                loaded = [e for e in entries if e["loadStatus"] == "LOADED" and e["locationOrLoadError"]]
                if loaded:
                    err = loaded[0]["locationOrLoadError"]
                    if err["__typename"] == "PythonError":
                        pytest.fail(f"code location {loaded[0]['name']} failed to load: {err['message']}{''.join(err['stack'])}")
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"code location not loaded within {CODE_LOCATION_S}s: {entries}\n{_tail(log_path)}")
                time.sleep(2)
            assert _graphql(base, "{ shouldShowNux }")["shouldShowNux"] is False, "the community dialog is still on"
            yield base, workdir, log_path
        finally:
            _stop_server(proc, workdir)
            shutil.copyfile(log_path, artifacts / "dagster-dev.log")


# ----------------------------------------------------------------------------------------- test


def test_ui_graph_lineage_materialize_all_and_checks(chromium_bin, artifacts, dagster_ui):
    from playwright.sync_api import expect, sync_playwright

    chromium = chromium_bin
    base, workdir, log_path = dagster_ui
    art = artifacts

    from dataset_platform.definitions import build_definitions

    graph = build_definitions(demo_config_path(), workdir).resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    names = [k.to_user_string() for k in keys]
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in keys}
    checks = {k.to_user_string(): sorted(c.name for c in graph.get(k).check_keys) for k in keys}
    assert REQUIRED_ASSETS <= set(names), names
    assert "gx_suite" in checks["dataset_release"]
    served = _graphql(base, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    assert sorted("/".join(n["assetKey"]["path"]) for n in served) == names  # the server loaded the same graph

    blocked: list[str] = []

    def loopback_only(route):
        url = urlsplit(route.request.url)
        host = url.hostname or ""
        if host in LOOPBACK_HOSTS or host.startswith("127.") or url.scheme == "file":  # (file: the Data Docs)
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def shot(page, name: str) -> None:
        path = art / f"{name}.png"
        page.screenshot(path=str(path))
        print(f"screenshot {path}")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.set_default_navigation_timeout(2 * UI_TIMEOUT_MS)
            context.route("**/*", loopback_only)
            page = context.new_page()
            expect.set_options(timeout=UI_TIMEOUT_MS)

            # 0. a new work folder's first page: no "Join the Dagster community" dialog (it opened a
            #    second after the page loaded; the dagster.yaml of _prepare_instance turns it off)
            page.goto(base + "/")
            expect(page.get_by_role("navigation").get_by_role("link", name=re.compile(r"Lineage$"))).to_be_visible()
            page.wait_for_timeout(2500)
            assert page.get_by_text("Join the Dagster community").count() == 0 and page.get_by_role("dialog").count() == 0
            shot(page, "00-first-page-no-community-dialog")

            # 1. the global asset graph: every asset of the Definitions is a node with its name
            page.get_by_role("navigation").get_by_role("link", name=re.compile(r"Lineage$")).click()
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            materialize_all = page.get_by_role("button", name="Materialize all")
            expect(materialize_all).to_be_visible()
            # graph options
            page.get_by_role("button", name="settings", exact=True).click()
            page.get_by_role("menuitem", name=re.compile(r"(Expand|Collapse) all groups")).wait_for()
            expand = page.get_by_role("menuitem", name="Expand all groups")
            if expand.count():
                expand.click()  # show every asset, not just its group's box
            else:
                page.keyboard.press("Escape")
            shown = _wait_for_nodes(page, names, set(names))
            shot(page, "01-asset-graph")
            assert shown == set(names), f"asset graph misses {sorted(set(names) - shown)}"

            # 2. lineage: the release's Lineage tab (upstream) shows exactly its parents, and so
            #    does every asset with a small upstream neighbourhood (one or two parents)
            page.goto(base + "/assets/dataset_release")
            page.get_by_role("tab", name="Lineage").click()
            page.get_by_role("button", name="Upstream").click()
            expect(page.get_by_text("Graph depth")).to_be_visible()
            want = parents["dataset_release"] | {"dataset_release"}
            shown = _wait_for_nodes(page, names, want)
            shot(page, "02-lineage-dataset_release")
            assert shown == want, f"dataset_release upstream: shown {sorted(shown)}, expected {sorted(want)}"
            assert len(parents["dataset_release"]) >= 1
            for name in names:
                if name == "dataset_release" or not 1 <= len(parents[name]) <= 2:
                    continue
                page.goto(f"{base}/assets/{name}?view=lineage&lineageScope=upstream&lineageDepth=1")
                expect(page.get_by_text("Graph depth")).to_be_visible()
                want = parents[name] | {name}
                shown = _wait_for_nodes(page, names, want)
                if shown != want:
                    shot(page, f"02-lineage-{name}")
                assert shown == want, f"{name} upstream: shown {sorted(shown)}, expected {sorted(want)}"

            # 3. launch the whole graph from the UI: Materialize all -> all partitions -> Launch
            page.get_by_role("navigation").get_by_role("link", name=re.compile(r"Lineage$")).click()
            materialize_all.click()
            dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
            expect(dialog).to_be_visible()
            expect(dialog.get_by_text(f"Launch runs to materialize {len(names)} assets")).to_be_visible()
            # the dialog opens on 0 partitions and a disabled launch: "All" selects every source (README)
            expect(dialog.get_by_text("0 partitions")).to_be_visible()
            expect(dialog.get_by_role("button", name="Launch backfill")).to_be_disabled()
            shot(page, "03-materialize-all-dialog-0-partitions")
            dialog.get_by_role("button", name="All", exact=True).click()
            launch = dialog.get_by_role("button", name="Launch 1 run")  # the demo has one source partition
            expect(launch).to_be_enabled()
            shot(page, "03-materialize-all-dialog")
            launches = []

            def on_response(response):
                post = response.request.post_data or ""
                if urlsplit(response.url).path.endswith("/graphql") and "mutation" in post and "launch" in post.lower():
                    launches.append(response)

            page.on("response", on_response)
            launch.click()
            expect(dialog).to_be_hidden(timeout=2 * UI_TIMEOUT_MS)
            page.remove_listener("response", on_response)
            # the UI's launch mutation answers with the new run (its id is a UUID)
            uuid = r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
            run_ids = sorted(set(re.findall(rf'"(?:runId|id)"\s*:\s*"({uuid})"', "".join(r.text() for r in launches))))
            assert len(run_ids) == 1, f"expected one launched run, the UI's launch responses said {run_ids}"
            run_id = run_ids[0]
            shot(page, "03-launched")
            run = _graphql(base, RUN_QUERY, {"runId": run_id})["runOrError"]
            assert run["__typename"] == "Run", run
            assert {"key": "dagster/from_ui", "value": "true"} in run["tags"], run["tags"]
            print(f"run {run_id} launched from the UI")

            # 4. follow the run in the UI (Runs list -> run page) until it succeeds
            page.get_by_role("navigation").get_by_role("link", name=re.compile(r"Runs$")).click()
            page.get_by_role("link", name=run_id[:8]).first.click()
            page.wait_for_url(re.compile(rf"/runs/{run_id}"))
            deadline = time.monotonic() + RUN_DEADLINE_S
            last_shot = 0.0
            status = run["status"]
            while status not in ("SUCCESS", "FAILURE", "CANCELED"):
                if time.monotonic() > deadline:
                    shot(page, "04-run-timeout")
                    pytest.fail(f"run {run_id} still {status} after {RUN_DEADLINE_S}s:\n"
                                f"{_report_failure(base, run_id)}\n--- dagster dev log ---\n{_tail(log_path)}")
                if time.monotonic() - last_shot > 60:
                    shot(page, "04-run-in-progress")
                    last_shot = time.monotonic()
                page.wait_for_timeout(5000)
                status = _graphql(base, RUN_QUERY, {"runId": run_id})["runOrError"]["status"]
            if status != "SUCCESS":
                shot(page, "04-run-failed")
                pytest.fail(f"run {run_id} ended {status}:\n{_report_failure(base, run_id)}\n"
                            f"--- dagster dev log ---\n{_tail(log_path)}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=2 * UI_TIMEOUT_MS)
            shot(page, "05-run-success")
            events = _run_events(base, run_id)
            materialized = {"/".join(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent"}
            assert materialized == set(names), f"the run materialised {sorted(materialized)}"
            evaluated = {("/".join(e["evaluation"]["assetKey"]["path"]), e["evaluation"]["checkName"])
                         for e in events if e["__typename"] == "AssetCheckEvaluationEvent"}
            assert evaluated == {(n, c) for n in names for c in checks[n]}, "not every check was evaluated"

            # 5. the checks of the release and of the labelled layer, as the UI shows them
            for asset in ("dataset_release", "labelled_documents"):
                page.goto(f"{base}/assets/{asset}")
                page.get_by_role("tab", name="Checks").click()
                expect(page.get_by_text(f"Checks ({len(checks[asset])})")).to_be_visible()
                for check in checks[asset]:
                    label = page.get_by_text(check, exact=True).first  # the list comes before the details
                    expect(label).to_be_visible()
                    # the check's row: the nearest element around its name that states a status (read
                    # again until the row has rendered its own status: before that, the walk reaches
                    # the whole list, whose text holds the other checks)
                    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
                    while True:
                        row_text = label.evaluate(
                            "(el) => { let n = el; while (n && !/Succeeded|Failed|Warning|Skipped|Not evaluated|Running/"
                            ".test(n.innerText || '')) n = n.parentElement; return n ? n.innerText : ''; }")
                        others = [c for c in checks[asset] if c != check and c in row_text.split()]
                        if (not others and "Succeeded" in row_text) or time.monotonic() > deadline:
                            break
                        page.wait_for_timeout(250)
                    assert not others and "Succeeded" in row_text, f"{asset}:{check} row says {row_text!r}"
                page.get_by_text("gx_suite", exact=True).first.click()
                expect(page.get_by_text("Evaluation result")).to_be_visible()
                expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
                # the latest evaluation shown is the one of the run launched above
                expect(page.locator(f'a[href*="/runs/{run_id}"]').first).to_be_visible()
                shot(page, f"06-checks-{asset}")

            # 6. what the assets' metadata shows (issue: UI papercuts)
            _check_metadata_in_ui(page, base, run_id, names, shot, expect)
            # 7. the GX Data Docs of the release's suite, opened from disk with every network request
            #    blocked: styled (Bootstrap, Font Awesome) and the index lists the validations
            _check_data_docs_offline(context, base, run_id, blocked, shot)
        finally:
            browser.close()
    if blocked:
        print(f"requests to non-loopback hosts were blocked: {sorted(set(blocked))}")


METADATA_QUERY = """
query($runId: ID!) { logsForRun(runId: $runId, limit: 100000) { __typename
  ... on EventConnection { events { __typename
    ... on MaterializationEvent { assetKey { path } metadataEntries { ...entry } }
    ... on AssetCheckEvaluationEvent { evaluation { checkName assetKey { path } metadataEntries { ...entry } } } } }
  ... on PythonError { message } } }
fragment entry on MetadataEntry { label __typename
  ... on FloatMetadataEntry { floatValue }
  ... on PathMetadataEntry { path }
  ... on TableSchemaMetadataEntry { schema { columns { name description } } } }
"""


def _run_metadata(base: str, run_id: str) -> list[tuple[str, str, dict]]:
    """(asset, check name or "", {label: entry}) of every materialisation and check of the run."""
    data = _graphql(base, METADATA_QUERY, {"runId": run_id})["logsForRun"]
    assert data["__typename"] == "EventConnection", data
    out = []
    for e in data["events"]:
        if e["__typename"] == "MaterializationEvent":
            out.append(("/".join(e["assetKey"]["path"]), "", {m["label"]: m for m in e["metadataEntries"]}))
        elif e["__typename"] == "AssetCheckEvaluationEvent":
            ev = e["evaluation"]
            out.append(("/".join(ev["assetKey"]["path"]), ev["checkName"], {m["label"]: m for m in ev["metadataEntries"]}))
    return out


def _rounded(x: float) -> bool:
    """At most 4 significant digits (more only in the integer part): defs/metadata.round_float."""
    return x == 0 or not math.isfinite(x) or x == round(x, max(0, 3 - math.floor(math.log10(abs(x)))))


def _check_metadata_in_ui(page, base: str, run_id: str, names: list[str], shot, expect) -> None:
    """Column descriptions, rounded floats and the dataset card rendered as Markdown."""
    entries = _run_metadata(base, run_id)
    # every column schema carries the descriptions of contracts/schema.py; every float is rounded
    schemas = {a: md["dagster/column_schema"]["schema"]["columns"] for a, c, md in entries
               if not c and "dagster/column_schema" in md}
    assert {"raw_pages", "cleaned_documents", "labelled_documents", "dataset_release"} <= set(schemas), sorted(schemas)
    for asset, cols in schemas.items():
        described = [c["name"] for c in cols if c["description"]]
        assert len(described) >= 0.75 * len(cols), f"{asset}: columns without a description: " \
            f"{[c['name'] for c in cols if not c['description']]}"
    floats = {(a, c, label): m["floatValue"] for a, c, md in entries for label, m in md.items()
              if m["__typename"] == "FloatMetadataEntry" and m["floatValue"] is not None}
    assert floats, "the run emitted no float metadata"
    unrounded = {k: v for k, v in floats.items() if not _rounded(v)}
    assert not unrounded, f"floats shown unrounded: {unrounded}"

    release = next(md for a, c, md in entries if a == "dataset_release" and not c)
    page.goto(f"{base}/assets/dataset_release")
    # the Columns table of the overview: a description from schema.py beside its column
    columns = page.get_by_text("Columns", exact=True).first
    expect(columns).to_be_visible()
    expect(page.get_by_text("train | validation | test", exact=True)).to_be_visible()
    expect(page.get_by_text("16 hex chars: first 64 bits of md5(source || ' ' || recorded url)").first).to_be_visible()
    columns.scroll_into_view_if_needed()
    shot(page, "07-release-column-descriptions")
    # a float of the release's metadata as the UI prints it (it was 0.033333333333333326)
    value = release["split_max_share_deviation"]["floatValue"]
    row = page.locator("tr", has_text="split_max_share_deviation").first
    row.scroll_into_view_if_needed()
    shown = row.locator("td").last.inner_text().strip()
    assert float(shown.replace(",", "")) == value and len(shown) <= 7, f"split_max_share_deviation shown as {shown!r}"
    shot(page, "08-release-metadata-rounded")
    # the dataset card, rendered: its headings, its YAML header in a code block
    card = page.locator("tr", has_text="dataset_card").filter(has_text="[Show Markdown]").first
    card.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    heading = dialog.get_by_role("heading", name=re.compile(r"^demo-web-text \(v\w+\)$"))
    expect(heading).to_be_visible()
    expect(dialog.get_by_role("heading", name="Splits", exact=True)).to_be_visible()
    expect(dialog.locator("code", has_text="dataset_info").first).to_be_attached()
    heading.scroll_into_view_if_needed()
    shot(page, "09-dataset-card-rendered")
    page.keyboard.press("Escape")
    assert Path(release["dataset_card_path"]["path"]).name == "README.md"  # (the path stays beside it)


def _check_data_docs_offline(context, base: str, run_id: str, blocked: list[str], shot) -> None:
    entries = _run_metadata(base, run_id)
    md = next(md for a, c, md in entries if a == "dataset_release" and c == "gx_suite")
    page_path, index_path = Path(md["data_docs"]["path"]), Path(md["data_docs_index"]["path"])
    assert page_path.is_file() and index_path.is_file(), (page_path, index_path)
    dd = context.new_page()
    failed: list[str] = []
    dd.on("requestfailed", lambda r: failed.append(r.url))
    before = len(blocked)
    styled = """async () => { await document.fonts.ready;
        const nav = document.querySelector('nav.navbar');
        return {navbar: nav ? getComputedStyle(nav).display : null,
                icons: [...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded'),
                bootstrap_js: !!(window.jQuery && window.jQuery.fn.collapse),
                rows: document.querySelectorAll('table tbody tr').length}; }"""
    dd.goto(page_path.as_uri())
    dd.wait_for_load_state("load")
    got = dd.evaluate(styled)
    shot(dd, "10-data-docs-page-offline")
    assert got["navbar"] == "flex", f"Bootstrap's CSS is not applied to {page_path}: {got}"  # (display: block without)
    assert got["icons"] and got["bootstrap_js"] and got["rows"] > 0, got
    assert dd.get_by_text("Expectation Suite:").count() and "dataset_release" in dd.title() + dd.content()
    dd.goto(index_path.as_uri())
    dd.wait_for_load_state("load")
    got = dd.evaluate(styled)
    shot(dd, "11-data-docs-index-offline")
    # the index's table is drawn by script from its rows: one per validation (the newest 25)
    assert got["navbar"] == "flex" and got["rows"] >= 1, got
    assert dd.locator("table tbody tr", has_text="dataset_release").count() >= 1
    dd.close()
    assert len(blocked) == before, f"the Data Docs asked the network for {blocked[before:]}"
    assert not failed, f"the Data Docs failed to load {failed}"
