"""The web pages in a real browser (Debian's Chromium, headless, driven by
Selenium) against a real `tagd run` that scanned real photos: name a face
cluster, pause and resume from the status page, sign in with a key; and the
guard that refuses writes a browser was tricked into sending. Screenshots of
each page at 1280x800 and 390x844 go to build/screenshots/."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import COCO_IMAGES, PERSON_PHOTO, write_config
from PIL import Image, ImageOps
from test_api import exchange, get, serve
from test_daemon_api import api_url
from test_service import running_daemon, stop, wait_until

from tagd.api.auth import key_sha256
from tagd.config import ApiKey, Settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
SIZES = {"wide": (1280, 800), "phone": (390, 844)}
# Read in one go in the page: the page reloads meanwhile, and elements go stale.
JS_NAMES = "return Array.from(document.querySelectorAll('.person'), r => r.dataset.name)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "Chromium and ChromeDriver are not installed (Debian: chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: Any, name: str) -> None:
    """The page now, at both sizes (the window is put back to the wide one)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        driver.set_window_size(width, height)
        time.sleep(0.2)
        driver.save_screenshot(str(SHOTS / f"{name}-{size}.png"))
    driver.set_window_size(*SIZES["wide"])


def wait_for(driver: Any, check: Any, what: str, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: check(d), message=f"timed out waiting for {what}"
    )


def by_css(driver: Any, selector: str) -> list[Any]:
    return driver.find_elements("css selector", selector)


@contextmanager
def scanned_daemon(
    tmp_path: Path, state_dir: Path, lib: Path, files: int
) -> Iterator[tuple[Any, Path, str]]:
    """`tagd run` on `lib` (its API on a free port), once its first scan tagged
    `files` files: (process, log, base URL)."""
    config = write_config(
        tmp_path / "config.toml",
        f'[library]\nroots = ["{lib}"]\n'
        '[daemon]\nschedule = ""\nwatch = false\n'
        '[api]\nlisten = "127.0.0.1:0"\n',
    )
    with running_daemon(tmp_path, state_dir, config) as (proc, log, notify):
        notify.wait_for("READY=1", 60, proc)
        base = api_url(state_dir)
        try:
            wait_until(lambda: tagged(base) == files, 120, "the scan")
        except AssertionError as exc:
            # What the daemon said is what tells a slow scan from a failed one.
            tail = log.read_text(errors="replace")[-6000:] if log.is_file() else "(no log)"
            raise AssertionError(f"{exc}; {tagged(base)} tagged; daemon log:\n{tail}") from None
        yield proc, log, base


def tagged(base: str) -> int:
    return int(get(base, "/api/v1/status").body["files"]["ok"])


def library_with_faces(folder: Path) -> None:
    """The photo with a person, a mirrored copy (a second face: one cluster), and
    two photos without one."""
    folder.mkdir(parents=True)
    shutil.copyfile(COCO_IMAGES / PERSON_PHOTO, folder / PERSON_PHOTO)
    with Image.open(COCO_IMAGES / PERSON_PHOTO) as person:
        ImageOps.mirror(person).save(folder / "mirrored.jpg", quality=92)
    others = sorted(p for p in COCO_IMAGES.glob("*.jpg") if p.name != PERSON_PHOTO)[:2]
    for src in others:
        shutil.copyfile(src, folder / src.name)


@pytest.mark.usefixtures("default_models")
def test_pages_name_a_cluster_and_pause_and_resume(
    tmp_path: Path, state_dir: Path, browser: Any
) -> None:
    lib = tmp_path / "library"
    library_with_faces(lib)
    with scanned_daemon(tmp_path, state_dir, lib, 4) as (proc, log, base):
        wait_until(lambda: get(base, "/api/v1/people").body["people"], 30, "a face cluster")

        browser.get(base + "/")
        assert by_css(browser, ".tile b")[0].text == "4"
        shoot(browser, "overview")

        # People: name the cluster from its row (Enter saves); the page reloads
        # with the name, which the API and the autocomplete now know.
        browser.get(base + "/people")
        [row] = by_css(browser, ".person")
        person = row.get_attribute("data-person")
        assert len(by_css(row, ".faces img")) == 2
        wait_for(
            browser,
            lambda d: all(d.execute_script("return arguments[0].naturalWidth", i) > 0
                          for i in by_css(d, ".faces img")),
            "the face thumbnails",
        )  # fmt: skip
        shoot(browser, "people")
        field = by_css(row, "form.name input")[0]
        field.send_keys("Alice\n")
        wait_for(
            browser,
            lambda d: d.execute_script(JS_NAMES) == ["Alice"],
            "the named cluster",
        )
        named = get(base, f"/api/v1/people/{person}").body
        assert named["name"] == "Alice" and named["faces"] == 2
        assert [o.get_attribute("value") for o in by_css(browser, "#names option")] == ["Alice"]

        # "Not this person": pick the second face (key 2 on the current row), r.
        refused = named["face_list"][1]["id"]
        kept = named["face_list"][0]["id"]
        body = browser.find_element("tag name", "body")
        body.send_keys("j")
        body.send_keys("2")
        picked = by_css(browser, f'.face[data-face="{refused}"]')[0]
        assert picked.get_attribute("aria-pressed") == "true"
        body.send_keys("r")
        wait_for(
            browser,
            lambda d: get(base, f"/api/v1/people/{person}").body["faces"] == 1,
            "the face taken out",
        )
        # Hiding is for strangers: a named person is refused, with the reason.
        hide = urllib.request.Request(
            f"{base}/api/v1/people/{person}/hide",
            data=b'{"hidden": true}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        status, _, raw = exchange(hide)
        assert status == 409 and b"only unnamed clusters" in raw

        # A new photo of her arrives and is scanned: it joins Alice, and the face
        # she is not stays out, though it is as close as ever.
        with Image.open(COCO_IMAGES / PERSON_PHOTO) as photo:
            photo.resize((photo.width * 9 // 10, photo.height * 9 // 10)).save(
                lib / "again.jpg", quality=90
            )
        browser.get(base + "/status")
        wait_for(browser, lambda d: by_css(d, "#state")[0].text == "idle", "the idle state")
        by_css(browser, "#scan-now")[0].click()
        wait_until(lambda: get(base, "/api/v1/status").body["files"]["ok"] == 5, 60, "the rescan")
        wait_until(
            lambda: get(base, f"/api/v1/people/{person}").body["faces"] == 2, 30, "the new face"
        )
        faces = {f["id"] for f in get(base, f"/api/v1/people/{person}").body["face_list"]}
        assert kept in faces and refused not in faces

        # Status: pause and resume with the buttons; the badge follows the events.
        browser.get(base + "/status")
        wait_for(browser, lambda d: by_css(d, "#state")[0].text == "idle", "the idle state")
        by_css(browser, "#pause")[0].click()
        wait_for(
            browser,
            lambda d: (
                by_css(d, "#resume")[0].is_displayed() and by_css(d, "#state")[0].text == "paused"
            ),
            "the paused state",
        )
        assert get(base, "/api/v1/status").body["service"]  # the API still answers
        shoot(browser, "status-paused")
        by_css(browser, "#resume")[0].click()
        wait_for(
            browser,
            lambda d: (
                by_css(d, "#pause")[0].is_displayed() and by_css(d, "#state")[0].text == "idle"
            ),
            "resume",
        )
        by_css(browser, "#scan-now")[0].click()
        toast = wait_for(browser, lambda d: re.search(r"Scan (\d+) queued", d.page_source), "it")
        done = f"scan {toast.group(1)} (api): done"
        wait_for(
            browser,
            lambda d: any(done in li.text for li in by_css(d, "#log li")),
            "this scan's done event in the log",
            timeout=60,
        )
        shoot(browser, "status")

        # Duplicates: the photo, its mirror and the smaller copy are one group, the
        # largest suggested; "Not duplicates" (d) and they are never grouped again.
        before = get(base, "/api/v1/dupes").body["groups"]
        assert len(before) == 1 and len(before[0]["others"]) == 2, before
        browser.get(base + "/dupes")
        [box] = by_css(browser, ".dupe-group")
        assert len(by_css(box, "figure")) == 3 and len(by_css(box, "figure.keep")) == 1
        shoot(browser, "dupes")
        # The two copies to quarantine and back, from the page.
        files = sorted(p.name for p in lib.iterdir())
        by_css(browser, "#quarantine")[0].click()
        browser.switch_to.alert.accept()
        wait_for(browser, lambda d: by_css(d, ".quarantined li"), "the quarantine list")
        copies = [Path(o["path"]) for o in before[0]["others"]]
        assert not any(c.exists() for c in copies) and Path(before[0]["keep"]["path"]).exists()
        assert not by_css(browser, ".dupe-group")
        shoot(browser, "dupes-quarantined")
        by_css(browser, "[data-restore]")[0].click()
        wait_for(browser, lambda d: not by_css(d, ".quarantined li"), "the restore")
        assert sorted(p.name for p in lib.iterdir()) == files
        # Back in the library, the copies are indexed again at the next scan.
        post_json(base, "/api/v1/scans", {})
        wait_for(
            browser,
            lambda d: len(get(base, "/api/v1/dupes").body["groups"]) == 1,
            "the group again",
            timeout=60,
        )
        browser.get(base + "/dupes")
        browser.find_element("tag name", "body").send_keys("d")
        wait_for(browser, lambda d: by_css(d, ".dupe-group.done"), "the settled group")
        assert get(base, "/api/v1/dupes").body["groups"] == []
        # Bad input: a clear 4xx, nothing stored.
        for body, status in (
            ({"content_ids": [1], "verdict": "kept"}, 422),
            ({"content_ids": [1, 99999], "verdict": "kept"}, 404),
            ({"content_ids": [1, 2], "verdict": "delete"}, 422),
        ):
            answer = urllib.request.Request(
                base + "/api/v1/dupes/verdict",
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            assert exchange(answer)[0] == status, body
        unicorn = {"content_id": 1, "tag": "AI|Objects|unicorn", "verdict": "reject"}
        wrong = urllib.request.Request(
            base + "/api/v1/review",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps(unicorn).encode(),
        )
        status, _, raw = exchange(wrong)
        assert status == 404 and b"no tag" in raw
        browser.get(base + "/dupes")
        assert not by_css(browser, ".dupe-group")
        assert all(p.exists() for p in lib.iterdir())  # nothing deleted or moved
        code, _ = stop(proc)
        assert code == 0, log.read_text()


def test_sign_in_with_a_key_and_the_guard(tmp_path: Path, browser: Any) -> None:
    admin = "admin-key-for-the-ui-test"
    keys = [ApiKey(sha256=key_sha256(admin), role="admin", name="me")]
    keyed = dataclasses.replace(Settings(), api=dataclasses.replace(Settings().api, api_keys=keys))
    served = serve(keyed, tmp_path / "state")
    try:
        base = served.base
        browser.delete_all_cookies()
        browser.get(base + "/people")
        wait_for(browser, lambda d: "/login" in d.current_url, "the sign-in page")
        shoot(browser, "login")
        browser.find_element("name", "key").send_keys("wrong\n")
        wait_for(browser, lambda d: by_css(d, ".error"), "the refusal")
        assert "not one of [api] api_keys" in by_css(browser, ".error")[0].text
        browser.find_element("name", "key").send_keys(admin + "\n")
        wait_for(browser, lambda d: d.current_url == base + "/people", "the page asked for")
        [cookie] = browser.get_cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert admin not in cookie["value"]  # the key's sha256, signed: never the key
        # The cookie lets the page's own calls through.
        answer = browser.execute_async_script(
            "const done = arguments[0];fetch('/api/v1/people').then(r => done(r.status));"
        )
        assert answer == 200
        by_css(browser, ".signout button")[0].click()
        wait_for(browser, lambda d: "/login" in d.current_url, "signed out")
    finally:
        served.stop()

    # Without keys: a write from another site, or to a name that is not this
    # machine (DNS rebinding), is refused before any route runs.
    served = serve(Settings(), tmp_path / "open-state")
    try:
        base = served.base
        for headers in (
            {"Origin": "http://evil.example"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Host": "evil.example"},
        ):
            request = urllib.request.Request(
                base + "/api/v1/scans/pause", data=b"", method="POST", headers=headers
            )
            status, found, _ = exchange(request)
            assert status == 403 and found["content-type"] == "application/problem+json"
        same = urllib.request.Request(
            base + "/api/v1/scans/pause",
            data=b"",
            method="POST",
            headers={"Origin": base},
        )
        assert exchange(same)[0] == 503  # let through: `tagd serve` runs no scans
    finally:
        served.stop()


@pytest.mark.usefixtures("default_models")
def test_review_accept_and_reject_reach_the_sidecars(
    tmp_path: Path, state_dir: Path, coco_photos: Any, browser: Any
) -> None:
    from conftest import exiftool_keywords
    from selenium.webdriver.common.keys import Keys

    from tagd.sinks.xmp.sidecar import sidecar_path

    lib = tmp_path / "library"
    coco_photos(6, dest=lib)
    with scanned_daemon(tmp_path, state_dir, lib, 6) as (proc, log, base):
        wait_until(
            lambda: get(base, "/api/v1/status").body["queued_writes"] == 0, 60, "the sidecars"
        )
        listed = get(base, "/api/v1/review", low=0.0, high=1.0, limit=500).body["items"]
        assert listed and all(i["source"] != "faces" for i in listed)
        assert [i["score"] for i in listed] == sorted(i["score"] for i in listed)

        # The page, least sure first: accept the first card (a), reject the next (x).
        browser.get(base + "/review?low=0&high=1")
        cards = by_css(browser, ".card-item")
        first, second = (
            (c.get_attribute("data-content"), c.get_attribute("data-tag")) for c in cards[:2]
        )
        assert [first, second] == [(str(i["content_id"]), i["tag"]) for i in listed[:2]]
        shoot(browser, "review")
        body = browser.find_element("tag name", "body")
        body.send_keys("a")
        wait_for(browser, lambda d: d.execute_script(JS_VERDICTS)[:1] == ["accept"], "accept")
        body.send_keys("x")
        wait_for(
            browser,
            lambda d: d.execute_script(JS_VERDICTS)[:2] == ["accept", "reject"],
            "reject",
        )
        # The decisions now show on the page's thresholds table.
        browser.get(base + "/review?low=0&high=1")
        decided = {r.get_attribute("data-tag") for r in by_css(browser, "#thresholds tr[data-tag]")}
        learnable = {i["tag"] for i in listed[:2] if i["source"] in ("objects", "concepts", "nsfw")}
        assert learnable <= decided, decided
        # Decided tags leave the queue; the rejected one leaves the file's tags.
        waiting = {(str(i["content_id"]), i["tag"]) for i in get(
            base, "/api/v1/review", low=0.0, high=1.0, limit=500
        ).body["items"]}  # fmt: skip
        assert first not in waiting and second not in waiting
        path_of = {str(i["content_id"]): Path(i["path"]) for i in listed}
        rejected_file = path_of[second[0]]
        accepted_file = path_of[first[0]]

        # The daemon writes both sidecars at once, nobody asking for a scan.
        def sidecars() -> tuple[list[str], list[str]]:
            read = exiftool_keywords([sidecar_path(rejected_file), sidecar_path(accepted_file)])
            return (
                read[str(sidecar_path(rejected_file))]["HierarchicalSubject"],
                read[str(sidecar_path(accepted_file))]["HierarchicalSubject"],
            )

        wait_until(lambda: second[1] not in sidecars()[0], 20, "the rejected tag's sidecar")
        rejected, accepted = sidecars()
        assert second[1] not in rejected, rejected
        assert first[1] in accepted, accepted
        # A rescan does not bring the rejected tag back.
        asked = post_json(base, "/api/v1/scans", {})
        wait_until(
            lambda: get(base, f"/api/v1/scans/{asked['id']}").body["state"] == "done",
            60,
            "the rescan",
        )
        file_id = next(i["file_id"] for i in listed if str(i["content_id"]) == second[0])
        tags = get(base, f"/api/v1/files/{file_id}").body["tags"]
        assert second[1] not in [t["name"] for t in tags]

        # Search by a tag's word; the first result opens its file page.
        word = first[1].rsplit("|", 1)[-1]
        browser.get(base + "/search")
        field = by_css(browser, "#q")[0]
        field.send_keys(word + "\n")
        wait_for(browser, lambda d: by_css(d, ".result"), "the results")
        shoot(browser, "search")
        hits = get(base, "/api/v1/search", q=word).body["results"]
        assert len(by_css(browser, ".result")) == len(hits) > 0
        body = browser.find_element("tag name", "body")
        body.send_keys("j")
        body.send_keys(Keys.ENTER)
        wait_for(browser, lambda d: "/files/" in d.current_url, "the file page")
        shown_id = int(browser.current_url.rsplit("/", 1)[-1])
        record = get(base, f"/api/v1/files/{shown_id}").body
        assert record["path"] == hits[0]["path"]
        # The photo itself (served as it is) under its boxes.
        wait_for(
            browser,
            lambda d: (
                d.execute_script("return document.querySelector('#picture').naturalWidth")
                == record["width"]
            ),
            "the original photo",
        )
        # The boxes sure enough to make a tag are drawn (the others only counted).
        sure = [o for o in record["objects"] if o["score"] >= 0.5]
        assert len(by_css(browser, ".layer.objects rect")) == len(sure) > 0
        shoot(browser, "file")
        by_css(browser, "[data-layer=objects]")[0].click()
        assert not by_css(browser, ".layer.objects rect")[0].is_displayed()
        # Reject a tag from the file page (k/j to it, x): gone from the file's tags.
        rows = by_css(browser, ".tag-row")
        names = [r.get_attribute("data-tag") for r in rows]
        assert names == [t["name"] for t in record["tags"]]
        target = names[-1]
        body = browser.find_element("tag name", "body")  # this page's
        for _ in range(names.index(target) + 1):
            body.send_keys("j")
        body.send_keys("x")
        wait_until(
            lambda: (
                target
                not in [t["name"] for t in get(base, f"/api/v1/files/{shown_id}").body["tags"]]
            ),
            20,
            "the tag rejected on the file page",
        )
        with urllib.request.urlopen(f"{base}/api/v1/files/{shown_id}/original") as answer:
            assert answer.headers["Content-Type"] == "image/jpeg"
            assert answer.read() == Path(record["path"]).read_bytes()
        # More like this: the file's near-duplicates and look-alikes, itself left out.
        browser.get(f"{base}/search?like={shown_id}")
        assert by_css(browser, ".result") and "most like" in browser.page_source
        code, _ = stop(proc)
        assert code == 0, log.read_text()


JS_VERDICTS = (
    "return Array.from(document.querySelectorAll('.card-item.done'), c => c.dataset.verdict)"
)


def post_json(base: str, route: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        base + route,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    status, _, raw = exchange(request)
    assert status < 300, raw
    return json.loads(raw)


@pytest.mark.usefixtures("default_models")
def test_teach_a_tag_in_the_browser(
    tmp_path: Path, state_dir: Path, browser: Any, cli: Any
) -> None:
    import cv2
    from test_teach import ONLY_CONCEPTS, SUBJECT, shots

    lib = tmp_path / "library"
    lib.mkdir()
    for i, image in enumerate(shots(cv2.imread(str(COCO_IMAGES / SUBJECT)))[:6]):
        cv2.imwrite(str(lib / f"ours_{i}.jpg"), image)
    for src in sorted(p for p in COCO_IMAGES.glob("*.jpg") if p.name != SUBJECT)[:12]:
        shutil.copyfile(src, lib / src.name)
    config = tmp_path / "c.toml"
    config.write_text(ONLY_CONCEPTS)
    code, _, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    served = serve(Settings(), state_dir)
    try:
        base = served.base
        # The library to browse (nothing searched yet): mark three shots with +.
        browser.get(base + "/search")
        cards = {
            Path(c.find_element("css selector", ".path").text).name: c
            for c in by_css(browser, ".result")
        }
        assert len(cards) == 18
        for i in range(3):
            cards[f"ours_{i}.jpg"].find_element("css selector", "[data-mark=example]").click()
        assert by_css(browser, "#teach-count")[0].text.startswith("3 examples")
        by_css(browser, "#teach-name")[0].send_keys("our subject\n")
        wait_for(browser, lambda d: "tag=AI%7CTaught%7Cour" in d.current_url, "the taught tag")
        found = {Path(e.text).name for e in by_css(browser, ".result .path")}
        # Found on the shots nobody marked, and (nearly) nowhere else.
        assert {f"ours_{i}.jpg" for i in range(3, 6)} <= found, found
        assert len(found - {f"ours_{i}.jpg" for i in range(6)}) <= 1, found
        shoot(browser, "teach")
    finally:
        served.stop()
