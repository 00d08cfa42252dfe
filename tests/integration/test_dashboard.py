"""The master's web dashboard in real headless Chromium (selenium), against live clusters.

The first test runs a master, two agents and a framework, and reads the page as an operator
would: agents, the framework, tasks with their states, cluster totals, a task's stdout and
stderr (through the master's proxy to the agent's /files), later changes without a reload, and
the error banner once the master is gone. The second registers 1,000 fake agents with 10,000
tasks (``fake_agents.py``) and checks the page stays paged, searchable and responsive.
Screenshots are saved in the test's tmp_path and decoded (zlib/struct) to check what they show.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fake_agents import FakeAgents, hostname
from mensa_cluster import Cluster, wait_until
from mensa_recorder import running, task

from mensa.deploy.zookeeper import ZooKeeperEnsemble, zookeeper_missing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

T = TypeVar("T")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile; quit (and its processes gone) afterwards."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_script_timeout(10)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, check: Callable[[WebDriver], T], what: str, timeout: float = 20) -> T:
    """Waits until ``check`` returns something truthy; fails naming ``what`` and the banner."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception as exc:
        banner = driver.find_element(By.ID, "banner")
        raise AssertionError(f"dashboard never showed {what} (banner: {banner.text!r})") from exc


def rows(driver: WebDriver, section: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f"#{section} tbody tr[data-key]")


def table(driver: WebDriver, section: str) -> dict[str, list[str]]:
    """Returns the rows of a section's table on screen (in order) by row key, each as its cells'
    text (read in one script, so a poll re-rendering the table cannot interleave)."""
    found: list[tuple[str, list[str]]] = driver.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr[data-key]`)]"
        "  .map((tr) => [tr.dataset.key, [...tr.cells].map((td) => td.innerText.trim())]);", section)
    return dict(found)


def http_status(url: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, {}


# -- Screenshots -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Image:
    """A decoded PNG: RGB(A) rows, ``channels`` bytes a pixel."""

    width: int
    height: int
    channels: int
    rows: list[bytes]

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        at = x * self.channels
        r, g, b = self.rows[y][at:at + 3]
        return r, g, b

    def colours(self, step: int = 7) -> set[tuple[int, int, int]]:
        """The distinct colours on a grid of every ``step``-th pixel."""
        return {self.pixel(x, y) for y in range(0, self.height, step) for x in range(0, self.width, step)}


def decode_png(data: bytes) -> Image:
    """Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if method == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif method == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif method == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif method == 4:  # Paeth
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out.append(bytes(line))
        previous = line
    return Image(width, height, channels, out)


def css_rgb(value: str) -> tuple[int, int, int]:
    """Parses a computed colour, ``rgb(29, 43, 58)`` or ``rgba(...)``."""
    inside = value[value.index("(") + 1:value.index(")")]
    r, g, b = (int(float(part)) for part in inside.split(",")[:3])
    return r, g, b


def close(a: tuple[int, int, int], b: tuple[int, int, int], slack: int = 6) -> bool:
    return all(abs(x - y) <= slack for x, y in zip(a, b, strict=True))


def screenshot(driver: WebDriver, path: Path) -> Image:
    """Saves a screenshot to ``path`` and checks it is the viewport, and not blank."""
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    image = decode_png(path.read_bytes())
    width, height, ratio = driver.execute_script(
        "return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
    assert (image.width, image.height) == (round(width * ratio), round(height * ratio)), \
        f"{path.name}: {image.width}x{image.height}, viewport {width}x{height}@{ratio}"
    assert len(image.colours()) > 20, f"{path.name} is nearly uniform: {image.colours()}"
    return image


def shows_element(driver: WebDriver, image: Image, css: str) -> tuple[int, int, int]:
    """Checks the screenshot shows the element's background colour at (near) its top-left
    corner; returns that colour."""
    rect, colour, ratio = driver.execute_script(
        "const el = document.querySelector(arguments[0]); const r = el.getBoundingClientRect();"
        "return [[r.left, r.top, r.width, r.height], getComputedStyle(el).backgroundColor,"
        " window.devicePixelRatio];", css)
    left, top, width, height = rect
    assert width > 8 and height > 8 and top >= 0 and top + 4 < image.height / ratio, f"{css} is not on screen"
    expected = css_rgb(colour)
    seen = image.pixel(int((left + 4) * ratio), int((top + 4) * ratio))
    assert close(seen, expected), f"{css}: screenshot has {seen} where the page paints {expected}"
    return expected


# -- The live cluster --------------------------------------------------------------------------------

KNOWN_LINE = "dashboard says hello 42"
XSS_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_dashboard_shows_a_live_cluster_with_task_output(cluster: Cluster, browser: WebDriver,
                                                         tmp_path: Path) -> None:
    cluster.start_master()
    cluster.start_agent("agent1", "cpus:2;mem:1024;disk:100;ports:[31000-31009]", "--attributes", "rack:a")
    cluster.start_agent("agent2", "cpus:2;mem:1024;disk:100;ports:[32000-32009]")
    agents = {a["hostname"]: a["id"] for a in cluster.wait_agents(2)}
    with running(cluster, name="dashboard-fw") as (sched, driver, framework_id):
        chatty = task("chatty", f'echo "{KNOWN_LINE}"; echo "complaint on stderr" >&2; '
                      'while [ ! -e release ]; do sleep 0.1; done; echo "released line"; sleep 300')
        sneaky = task("sneaky", "sleep 300")
        sneaky.name = XSS_NAME
        sched.submit(driver, chatty, hostname="agent1")
        sched.submit(driver, sneaky, task("quick", "true"), hostname="agent2")
        sched.state_of("chatty", "TASK_RUNNING")
        sched.state_of("sneaky", "TASK_RUNNING")
        sched.state_of("quick", "TASK_FINISHED")
        wait_until(lambda: cluster.tasks(framework_id).get("quick") == "TASK_FINISHED", what="quick done")

        browser.get(cluster.http + "/")
        wait_for(browser, lambda d: len(rows(d, "agents")) == 2 and len(rows(d, "tasks")) == 3,
                 "2 agents and 3 tasks")
        browser.execute_script("window.__loaded_once = true")

        # Agents: hostnames, ids, resources, attributes, task counts.
        shown_agents = {cells[0]: cells for cells in table(browser, "agents").values()}
        assert set(shown_agents) == {"agent1", "agent2"}
        assert shown_agents["agent1"][1] == agents["agent1"]
        assert shown_agents["agent1"][2].startswith("0.5 / 2")  # cpus used / total
        assert shown_agents["agent1"][5] == "rack:a"
        assert shown_agents["agent2"][6] == "1"  # one live task (quick finished)
        # The framework, and its tasks with states, agents and framework names.
        [fw_row] = table(browser, "frameworks").values()
        assert fw_row[:4] == ["dashboard-fw", framework_id, "*", "active"]
        tasks = table(browser, "tasks")
        assert tasks[f"{framework_id}/chatty"][:5] == ["chatty", "chatty", "dashboard-fw", "agent1",
                                                       "TASK_RUNNING"]
        assert tasks[f"{framework_id}/quick"][4] == "TASK_FINISHED"
        # A task's name is shown as text, never run as markup.
        assert tasks[f"{framework_id}/sneaky"][1] == XSS_NAME
        assert browser.execute_script("return window.__xss") is None
        assert browser.find_elements(By.CSS_SELECTOR, "#tasks img, #tasks script") == []
        # Cluster totals and the leading master.
        figure = browser.find_element(By.CSS_SELECTOR, '#totals [data-resource="cpus"] .figure').text
        assert figure == "1 / 4"
        mem = browser.find_element(By.CSS_SELECTOR, '#totals [data-resource="mem"] .figure').text
        assert mem == "128 MiB / 2 GiB"
        state = cluster.state()
        assert state["id"] in browser.find_element(By.ID, "leader").text
        assert "updated" in browser.find_element(By.ID, "updated").text
        assert not browser.find_element(By.ID, "banner").is_displayed()
        overview = screenshot(browser, tmp_path / "overview.png")
        shows_element(browser, overview, "header.top")
        assert close(shows_element(browser, overview, '#totals [data-resource="cpus"] .bar .used'),
                     (0x2E, 0x7D, 0x32))

        # The task's stdout, through the master's proxy, then stderr, then output that comes later.
        chatty_row = f'#tasks tr[data-key="{framework_id}/chatty"]'
        browser.find_element(By.CSS_SELECTOR, f'{chatty_row} button[data-file="stdout"]').click()
        log = browser.find_element(By.ID, "logs-text")
        wait_for(browser, lambda d: KNOWN_LINE in log.text, "the task's stdout")
        assert "complaint" not in log.text
        assert "stdout of task chatty" in browser.find_element(By.ID, "logs-title").text
        logs_image = screenshot(browser, tmp_path / "stdout.png")
        shows_element(browser, logs_image, "#logs-text")
        [sandbox] = [p.parent for p in cluster.root.glob("agent1/**/chatty/**/stdout")]
        (sandbox / "release").touch()
        wait_for(browser, lambda d: "released line" in log.text, "output written after the log opened")
        browser.find_element(By.ID, "logs-stderr").click()
        wait_for(browser, lambda d: "complaint on stderr" in log.text, "the task's stderr")
        browser.find_element(By.ID, "logs-close").click()
        assert not browser.find_element(By.ID, "logs").is_displayed()

        # A later change shows up without a reload.
        driver.kill_task("chatty")
        sched.state_of("chatty", "TASK_KILLED")
        wait_for(browser, lambda d: table(d, "tasks")[f"{framework_id}/chatty"][4] == "TASK_KILLED",
                 "chatty killed")
        assert browser.execute_script("return window.__loaded_once") is True
        wait_for(browser, lambda d: d.find_element(
            By.CSS_SELECTOR, '#totals [data-resource="cpus"] .figure').text == "0.5 / 4", "cpus freed")
        # The state filter narrows the tasks table to what is live.
        Select(browser.find_element(By.CSS_SELECTOR, "#tasks .state-filter")).select_by_value("live")
        assert [c[0] for c in table(browser, "tasks").values()] == ["sneaky"]

        # The proxy to agents: GET only, known agents only, the agent's path checks apply.
        agent1 = agents["agent1"]
        assert http_status(f"{cluster.http}/agents/{agent1}/state")[1]["hostname"] == "agent1"
        assert http_status(f"{cluster.http}/agents/no-such-agent/state")[0] == 404
        assert http_status(f"{cluster.http}/agents/..%2F..%2Fetc/state")[0] == 400
        status, body = http_status(f"{cluster.http}/agents/{agent1}/files/read?path=/etc/passwd")
        assert (status, body["code"]) == (403, 403)
        assert http_status(f"{cluster.http}/agents/{agent1}/files/read?path=x&offset=abc")[0] == 400
        assert http_status(f"{cluster.http}/agents/{agent1}/state", method="POST")[0] == 405
        assert http_status(f"{cluster.http}/ui/leader")[1]["leading"] is True
        assert http_status(f"{cluster.http}/ui/nothing.js")[0] == 404

    # The master goes away: the page keeps its last data and says so.
    cluster.processes[0].stop()
    banner = browser.find_element(By.ID, "banner")
    wait_for(browser, lambda d: banner.is_displayed() and "Cannot reach the master" in banner.text,
             "the error banner")
    assert len(rows(browser, "agents")) == 2
    gone = screenshot(browser, tmp_path / "master-gone.png")
    assert close(shows_element(browser, gone, "#banner"), (0xB3, 0x26, 0x1E))


# -- 1,000 agents ----------------------------------------------------------------------------------


def test_dashboard_stays_responsive_with_1000_agents_and_10000_tasks(cluster: Cluster, browser: WebDriver,
                                                                     tmp_path: Path) -> None:
    cluster.start_master("--agent-ping-timeout", "10")
    with socket.socket() as probe:  # a port nothing listens on: the fake agents' "HTTP API"
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with FakeAgents(cluster.master_endpoint, 1000, tasks_per_agent=10, http_port=dead_port) as fakes:
        ids = fakes.wait_registered(timeout=60)
        wait_until(lambda: len(cluster.state()["agents"]) == 1000, what="1000 agents in /state")

        started = time.monotonic()
        browser.get(cluster.http + "/")
        agents_count = browser.find_element(By.CSS_SELECTOR, "#agents .count")
        tasks_count = browser.find_element(By.CSS_SELECTOR, "#tasks .count")
        wait_for(browser, lambda d: agents_count.text == "(1000)" and tasks_count.text == "(10000)",
                 "1000 agents and 10000 tasks", timeout=60)
        first_render = time.monotonic() - started
        image = screenshot(browser, tmp_path / "thousand-agents.png")
        shows_element(browser, image, "header.top")
        assert close(shows_element(browser, image, '#totals [data-resource="cpus"] .bar .used'),
                     (0x2E, 0x7D, 0x32))

        # Only a page of rows is in the DOM.
        assert len(rows(browser, "agents")) == 25
        assert len(rows(browser, "tasks")) == 25
        dom_nodes = browser.execute_script("return document.getElementsByTagName('*').length")
        assert dom_nodes < 5000
        assert [c[0] for c in table(browser, "agents").values()] == [hostname(i) for i in range(25)]
        # Paging reaches the next rows; the filter reaches one agent, and one task.
        browser.find_element(By.CSS_SELECTOR, "#agents .pager .next").click()
        assert [c[0] for c in table(browser, "agents").values()] == [hostname(i) for i in range(25, 50)]
        assert "rows 26–50 of 1000" in browser.find_element(By.CSS_SELECTOR, "#agents .pager .info").text
        browser.find_element(By.CSS_SELECTOR, "#agents .filter").send_keys(hostname(777))
        wait_for(browser, lambda d: len(rows(d, "agents")) == 1, "the filtered agent")
        [agent_row] = table(browser, "agents").values()
        assert agent_row[:2] == [hostname(777), ids[777]]
        assert agent_row[6] == "10"
        browser.find_element(By.CSS_SELECTOR, "#tasks .filter").send_keys(f"{hostname(512)}-task-07")
        wait_for(browser, lambda d: len(rows(d, "tasks")) == 1, "the filtered task")
        [task_row] = table(browser, "tasks").values()
        assert task_row[:5] == [f"{hostname(512)}-task-07", f"task 7 of {hostname(512)}", "fake-framework",
                                hostname(512), "TASK_RUNNING"]
        totals = browser.find_element(By.CSS_SELECTOR, '#totals [data-resource="cpus"] .figure').text
        assert totals == "1000 / 8000"
        # The task's agent does not answer: the log panel says so (the master's proxy answers 502).
        browser.find_element(By.CSS_SELECTOR, '#tasks tbody button[data-file="stdout"]').click()
        status = browser.find_element(By.ID, "logs-status")
        wait_for(browser, lambda d: "cannot read the stdout: 502" in status.text, "the agent unreachable")
        assert f"agent {ids[512]} cannot be reached" in status.text
        browser.find_element(By.ID, "logs-close").click()

        # The page answers scripts promptly and a forced full render is measured (not asserted).
        asked = time.monotonic()
        render_ms = browser.execute_script("return window.mensaDashboard.renderAll()")
        answered = time.monotonic() - asked
        assert answered < 10, f"the page took {answered:.1f}s to answer a script"
        wait_for(browser, lambda d: d.execute_script("return window.mensaDashboard.perf.polls") >= 2,
                 "a second poll", timeout=30)
        perf = browser.execute_script("return window.mensaDashboard.perf")
        print(f"\n1000 agents / 10000 tasks: first render {first_render:.2f}s, forced render "
              f"{render_ms:.1f} ms, last poll fetch {perf['lastFetchMs']:.0f} ms + render "
              f"{perf['lastRenderMs']:.1f} ms, longest task {perf['longestTaskMs']:.0f} ms, "
              f"{dom_nodes} DOM nodes")
        assert fakes.errors == []


# -- A standby master ----------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_a_standby_sends_the_browser_to_the_leader(cluster: Cluster, browser: WebDriver,
                                                   tmp_path: Path) -> None:
    missing = zookeeper_missing()
    if missing is not None:
        pytest.skip(f"ZooKeeper is not available: {missing}")
    with ZooKeeperEnsemble(tmp_path / "zk", size=1) as zk:
        try:
            uri = zk.uri("/dashboard")
            cluster.start_master("--zk", uri, name="master1")
            leader = cluster.http
            wait_until(lambda: http_status(f"{leader}/ui/leader")[1]["leading"], what="master1 leading")
            cluster.start_master("--zk", uri, name="master2")
            standby = cluster.http
            wait_until(lambda: http_status(f"{standby}/ui/leader")[1]["leader_url"] == leader,
                       what="master2 knowing the leader")

            # "/" on a standby is a 307 to the leader's dashboard, which the browser follows.
            opener = urllib.request.build_opener(_NoRedirects)
            with pytest.raises(urllib.error.HTTPError) as redirect:
                opener.open(f"{standby}/", timeout=5)
            assert (redirect.value.code, redirect.value.headers["Location"]) == (307, f"{leader}/")
            browser.get(f"{standby}/")
            assert browser.current_url == f"{leader}/"
            leader_id = http_status(f"{leader}/state")[1]["id"]
            wait_for(browser, lambda d: leader_id in d.find_element(By.ID, "leader").text, "the leader")

            # A page the standby served itself: its polls are redirected to another origin, which
            # the browser refuses, so it asks the standby where the leader is and links there.
            browser.get(f"{standby}/ui/index.html")
            banner = browser.find_element(By.ID, "banner")
            wait_for(browser, lambda d: banner.is_displayed() and "the leader is at" in banner.text,
                     "where the leader is")
            assert banner.find_element(By.TAG_NAME, "a").get_attribute("href") == f"{leader}/"
            image = screenshot(browser, tmp_path / "standby.png")
            assert close(shows_element(browser, image, "#banner"), (0x8A, 0x5A, 0x00))
        finally:
            for proc in cluster.processes:
                proc.stop()
