"""The HTTP API (`tagd serve`) against a real uvicorn server on 127.0.0.1 and a
catalog made by a real `tagd scan`: every route agrees with the CLI command it
mirrors, filters and paging, problem+json errors, keys."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import COCO_IMAGES, PERSON_PHOTO, require_models, write_config
from PIL import Image, ImageOps

from tagd.api.app import create_app
from tagd.api.auth import key_sha256
from tagd.config import ApiKey, Settings, load_settings

Cli = Callable[..., tuple[int, str, str]]
PROBLEM = "application/problem+json"


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def exchange(
    request: urllib.request.Request, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one request, error statuses included."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, headers, raw = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    return status, {k.lower(): v for k, v in headers.items()}, raw


def reply(request: urllib.request.Request, key: str | None, timeout: float = 60) -> Reply:
    """The JSON reply to `request`, sent with `key` as a bearer token if given."""
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    status, headers, raw = exchange(request, timeout)
    return Reply(status, headers, json.loads(raw or b"null"))


def get(base: str, route: str, key: str | None = None, **query: Any) -> Reply:
    url = base + route + (("?" + urllib.parse.urlencode(query)) if query else "")
    return reply(urllib.request.Request(url), key, timeout=30)


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def wait_healthy(base: str, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"tagd serve exited: {process.communicate()}")
        try:
            if get(base, "/api/v1/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{base} never became healthy")


@dataclasses.dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    stop: Callable[[], None]


def serve(settings: Settings, state: Path) -> Served:
    """create_app under a real uvicorn server in a thread, on a socket bound first
    (no window in which another test could take the port)."""
    import uvicorn

    sock = free_socket()
    app = create_app(settings, state)
    config = uvicorn.Config(app, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    wait_healthy(base)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.state.tagd.engine.close()

    return Served(base, stop)


@dataclasses.dataclass
class Library:
    folder: Path
    state: Path
    base: str  # the server without keys
    export: dict[str, dict[str, Any]]  # `tagd export` by path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """Four COCO photos and a mirrored copy of the one with a person (a duplicate,
    and a second face for the people clustering), scanned once for the module."""
    require_models()
    if not COCO_IMAGES.is_dir():
        pytest.skip(f"COCO sample {COCO_IMAGES} is absent")
    from tagd.cli.main import main

    root = tmp_path_factory.mktemp("api")
    folder, state = root / "photos", root / "state"
    folder.mkdir()
    names = sorted(p.name for p in COCO_IMAGES.glob("*.jpg") if p.name != PERSON_PHOTO)[:3]
    for name in [PERSON_PHOTO, *names]:
        (folder / name).write_bytes((COCO_IMAGES / name).read_bytes())
    with Image.open(COCO_IMAGES / PERSON_PHOTO) as person:
        ImageOps.mirror(person).save(folder / "mirrored.jpg", quality=92)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGD_STATE_DIR", str(state))
        mp.delenv("TAGD_CONFIG", raising=False)
        mp.delenv("STATE_DIRECTORY", raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
        assert main(["scan", str(folder)]) == 0
        export = root / "export.jsonl"
        assert main(["export", "-o", str(export)]) == 0
        rows = [json.loads(line) for line in export.read_text().splitlines()]
        served = serve(Settings(), state)
        try:
            yield Library(folder, state, served.base, {r["path"]: r for r in rows})
        finally:
            served.stop()


def all_files(base: str, key: str | None = None, **query: Any) -> list[dict[str, Any]]:
    """Every page of /files, following next_cursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        args = query | ({"cursor": cursor} if cursor else {})
        reply = get(base, "/api/v1/files", key, **args)
        assert reply.status == 200, reply.body
        out += reply.body["files"]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("next_cursor never ended")


def assert_problem(reply: Reply, status: int, *words: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith(PROBLEM)
    assert set(reply.body) >= {"type", "title", "status", "detail"}
    assert reply.body["status"] == status
    for word in words:
        assert word in reply.body["detail"], reply.body["detail"]


# ---------------------------------------------------------------- routes vs the CLI


def test_healthz_status_and_docs(library: Library, cli: Cli) -> None:
    assert get(library.base, "/api/v1/healthz").body == {"status": "ok"}
    reply = get(library.base, "/api/v1/status")
    assert reply.status == 200
    status = reply.body
    code, out, err = cli("status")
    assert code == 0, err
    files = status["files"]
    assert files["total"] == len(library.export) == 5
    assert (
        f"files: {files['total']} ({files['images']} images, {files['videos']} videos): "
        f"{files['ok']} ok, {files['pending']} pending, {files['error']} error"
    ) in out
    assert f"detections: {status['detections']}; tags: {status['tags']}" in out
    assert f"catalog: {status['catalog']}" in out
    # The daemon and last-scan lines are the CLI's, word for word (same second).
    lines = out.splitlines()
    for line in status["service"]:
        if not line.startswith("last scan"):
            assert line in lines
    assert status["last_scan"]["analysed"] == 5 and status["errors"] == []
    schema = get(library.base, "/api/openapi.json").body
    assert {"/api/v1/files", "/api/v1/files/{file_id}", "/api/v1/search"} <= set(schema["paths"])
    docs = urllib.request.urlopen(library.base + "/api/docs", timeout=10)
    assert docs.status == 200 and b"swagger" in docs.read().lower()


def test_files_walk_every_page_and_match_the_export(library: Library) -> None:
    listed = all_files(library.base, limit=2)  # 5 files: pages of 2, 2, 1
    ids = [f["id"] for f in listed]
    assert len(ids) == len(set(ids)) == 5 and ids == sorted(ids)
    assert {f["path"] for f in listed} == set(library.export)
    for f in listed:
        exported = library.export[f["path"]]
        for key in ("kind", "status", "error", "width", "height", "duration"):
            assert f[key] == exported[key], key
        assert f["size"] == os.stat(f["path"]).st_size
    first = get(library.base, "/api/v1/files", limit=2).body
    assert len(first["files"]) == 2 and first["next_cursor"]
    assert get(library.base, "/api/v1/files", limit=5).body["next_cursor"] is None


def test_files_filters(library: Library) -> None:
    every = {f["path"] for f in all_files(library.base)}

    def paths(**query: Any) -> set[str]:
        return {f["path"] for f in all_files(library.base, **query)}

    assert paths(kind="image") == every and paths(kind="video") == set()
    assert paths(status="ok") == every and paths(status="error") == set()
    assert paths(changed_since=0) == every
    assert paths(changed_since=time.time() + 3600) == set()
    assert paths(path=str(library.folder)) == every
    assert paths(path=str(library.folder / PERSON_PHOTO)) == {str(library.folder / PERSON_PHOTO)}
    # A tag by its last part and by its full path; its score bounds.
    tagged = {p: {t["name"]: t["score"] for t in row["tags"]} for p, row in library.export.items()}
    name = next(n for tags in tagged.values() for n in tags)
    leaf = name.rsplit("|", 1)[-1]
    having = {p for p, tags in tagged.items() if name in tags}
    assert paths(tag=name) == having and paths(tag=leaf) == having
    score = min(tags[name] for tags in tagged.values() if name in tags)
    assert paths(tag=name, min_score=score) == having
    assert paths(tag=name, max_score=max(score - 0.001, 0)) == {
        p for p in having if tagged[p][name] <= score - 0.001
    }
    assert paths(tag=name, min_score=min(score + 0.001, 1)) == {
        p for p in having if tagged[p][name] >= score + 0.001
    }


def test_a_file_is_its_export_object_with_sources_and_delivery(library: Library) -> None:
    for f in all_files(library.base):
        reply = get(library.base, f"/api/v1/files/{f['id']}")
        assert reply.status == 200
        body = reply.body
        exported = library.export[f["path"]]
        assert [{"name": t["name"], "score": t["score"]} for t in body["tags"]] == exported["tags"]
        assert all(t["source"] for t in body["tags"])
        for key, value in exported.items():
            if key != "tags":
                assert body[key] == value, key
        assert body["id"] == f["id"] and body["size"] == f["size"]
        # Sidecars were written by the scan: nothing waits for the xmp sink.
        assert body["delivery"]["xmp"] == {
            "state": "idle",
            "due": None,
            "attempts": 0,
            "last_error": None,
        }
    assert_problem(get(library.base, "/api/v1/files/999999"), 404, "999999")


def test_tags_count_files_as_the_export_has_them(library: Library) -> None:
    expected: dict[str, int] = {}
    for row in library.export.values():
        for tag in row["tags"]:
            expected[tag["name"]] = expected.get(tag["name"], 0) + 1
    tags = get(library.base, "/api/v1/tags").body["tags"]
    assert {t["name"]: t["files"] for t in tags} == expected
    assert [t["name"] for t in tags] == sorted(expected)


def test_search_ranks_as_tagd_search(library: Library, cli: Cli) -> None:
    for words in ("person", "umbrella person", "zebra"):
        code, out, _ = cli("search", "--json", "--limit", "3", *words.split())
        reply = get(library.base, "/api/v1/search", q=words, limit=3)
        assert reply.status == 200
        assert reply.body["results"] == (json.loads(out) if code == 0 else [])
    assert reply.body["query"] == "zebra"
    person = get(library.base, "/api/v1/search", q="person").body["results"]
    assert {r["path"] for r in person} >= {str(library.folder / PERSON_PHOTO)}


def test_people_and_dupes_as_the_cli(library: Library, cli: Cli) -> None:
    people = get(library.base, "/api/v1/people").body
    code, out, _ = cli("people", "list")
    assert code == 0
    waiting = people["waiting_faces"]
    assert re.search(rf"^{waiting} faces? waiting", out, re.M)
    for p in people["people"]:
        assert re.search(rf"^\s*{p['id']}\s+{re.escape(p['label'])}\s+{p['faces']} face", out, re.M)
    assert len(people["people"]) == sum(1 for line in out.splitlines() if "  e.g. " in line)

    code, out, _ = cli("dupes", "--json")
    assert code == 0
    dupes = get(library.base, "/api/v1/dupes").body
    assert dupes == json.loads(out)
    # The mirrored copy is found, with the original kept.
    (group,) = dupes["groups"]
    assert {group["keep"]["path"], *(o["path"] for o in group["others"])} == {
        str(library.folder / PERSON_PHOTO),
        str(library.folder / "mirrored.jpg"),
    }
    assert group["reason"] and group["others"][0]["mirrored"] is True
    assert get(library.base, "/api/v1/dupes", threshold=0).body["threshold"] == 0

    # Similar files: what `tagd similar FILE --json` says for the same file.
    photo = library.folder / PERSON_PHOTO
    ids = {f["path"]: f["id"] for f in all_files(library.base)}
    code, out, _ = cli("similar", photo, "--limit", "3", "--json")
    assert code == 0
    similar = get(library.base, f"/api/v1/files/{ids[str(photo)]}/similar", limit=3).body
    assert similar == json.loads(out)
    assert similar["similar"][0]["path"] == str(library.folder / "mirrored.jpg")
    assert_problem(get(library.base, "/api/v1/files/999999/similar"), 404)


# ---------------------------------------------------------------- errors


def test_bad_values_unknown_routes_and_outside_paths_are_problems(library: Library) -> None:
    base = library.base
    assert_problem(get(base, "/api/v1/files", limit=5000), 422, "'limit'")
    assert_problem(get(base, "/api/v1/files", kind="banana"), 422, "'kind'")
    assert_problem(get(base, "/api/v1/files", changed_since="yesterday"), 422, "'changed_since'")
    assert_problem(get(base, "/api/v1/files", cursor="not-a-cursor"), 422, "'cursor'")
    assert_problem(get(base, "/api/v1/files", min_score=0.5), 422, "'min_score'", "tag")
    assert_problem(get(base, "/api/v1/files", path="photos"), 422, "'path'", "absolute")
    assert_problem(get(base, "/api/v1/files/abc"), 422, "'file_id'")
    assert_problem(get(base, "/api/v1/search"), 422, "'q'")
    assert_problem(get(base, "/api/v1/dupes", threshold=17), 422, "'threshold'")
    assert_problem(get(base, "/api/v1/nowhere"), 404, "/api/v1/nowhere", "/api/docs")
    assert_problem(get(base, "/elsewhere"), 404)
    outside = library.folder.parent / "elsewhere"
    assert_problem(get(base, "/api/v1/files", path=str(outside)), 403, "outside the library")
    assert_problem(get(base, "/api/v1/files", path="/etc"), 403, "/etc")


# ---------------------------------------------------------------- keys


def test_with_keys_every_route_but_healthz_needs_one(library: Library) -> None:
    read_key, admin_key = "read-key-for-the-test", "admin-key-for-the-test"
    settings = dataclasses.replace(
        Settings(),
        api=dataclasses.replace(
            Settings().api,
            api_keys=[
                ApiKey(sha256=key_sha256(read_key), role="read", name="frame"),
                ApiKey(sha256=key_sha256(admin_key), role="admin", name="me"),
            ],
        ),
    )
    served = serve(settings, library.state)
    try:
        base = served.base
        assert get(base, "/api/v1/healthz").status == 200
        for route in ("/api/v1/files", "/api/v1/status", "/api/v1/tags", "/api/v1/people"):
            missing = get(base, route)
            assert_problem(missing, 401, "Authorization: Bearer")
            assert missing.headers["www-authenticate"] == "Bearer"
            assert_problem(get(base, route, key="wrong"), 401, "not one of")
            assert get(base, route, key=read_key).status == 200
            assert get(base, route, key=admin_key).status == 200
        assert all_files(base, key=read_key, limit=3) == all_files(library.base, limit=3)
        # Scans, pause and resume need an admin key (then `tagd serve` says it runs none).
        for route in ("/api/v1/scans", "/api/v1/scans/pause", "/api/v1/scans/resume"):
            asked = urllib.request.Request(base + route, data=b"", method="POST")
            assert_problem(reply(asked, None), 401, "Authorization: Bearer")
            asked = urllib.request.Request(base + route, data=b"", method="POST")
            assert_problem(reply(asked, read_key), 403, "admin key")
            asked = urllib.request.Request(base + route, data=b"", method="POST")
            assert_problem(reply(asked, admin_key), 503, "tagd run")
        assert get(base, "/api/v1/events").status == 401
    finally:
        served.stop()


def test_serve_refuses_an_open_address_without_keys_and_a_taken_port(
    state_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    code, _, err = cli("serve", "--listen", "0.0.0.0:8765")
    assert code == 2 and "api.api_keys is empty" in err and "tagd api-key new" in err
    config = write_config(tmp_path / "open.toml", '[api]\nlisten = "0.0.0.0:8765"\n')
    code, _, err = cli("--config", config, "serve")
    assert code == 2 and "api.listen 0.0.0.0:8765" in err
    code, _, err = cli("serve", "--listen", "127.0.0.1:http")
    assert code == 2 and "--listen" in err and "port" in err
    taken = free_socket()
    try:
        code, _, err = cli("serve", "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
    finally:
        taken.close()
    assert code == 2 and "is taken" in err


def test_a_key_from_api_key_new_opens_a_real_tagd_serve(
    library: Library, tmp_path: Path, cli: Cli
) -> None:
    code, out, _ = cli("api-key", "new", "--read-only", "--name", 'frame "2"')
    assert code == 0
    key = re.search(r"^key: (\S+)$", out, re.M)[1]  # type: ignore[index]
    entry = next(line.strip().rstrip(",") for line in out.splitlines() if "sha256 =" in line)
    assert key not in entry and key_sha256(key) in entry
    config = write_config(tmp_path / "config.toml", f"[api]\napi_keys = [{entry}]\n")
    loaded = load_settings(config).api.api_keys
    assert loaded == [ApiKey(sha256=key_sha256(key), role="read", name='frame "2"')]

    sock = free_socket()  # a free port, released just before tagd serve binds it
    port = sock.getsockname()[1]
    sock.close()
    env = os.environ | {"TAGD_STATE_DIR": str(library.state)}
    serve_args = ["--config", str(config), "serve", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tagd", *serve_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        assert_problem(get(base, "/api/v1/files"), 401)
        reply = get(base, "/api/v1/files", key=key)
        assert reply.status == 200 and len(reply.body["files"]) == 5
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert "serving the web pages on" in err and "the API on" in err


# ---------------------------------------------------------------- POST /analyze


def post_form(
    base: str,
    route: str,
    fields: dict[str, str],
    upload: tuple[str, bytes] | None = None,
    key: str | None = None,
) -> Reply:
    """A multipart/form-data POST, as a browser or `curl -F` sends one."""
    boundary = "tagd-test-boundary-7d1f"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if upload is not None:
        filename, data = upload
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(base + route, data=body, method="POST")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    return reply(request, key, timeout=120)


def same_results(got: dict[str, Any], exported: dict[str, Any]) -> None:
    """/analyze's object equals `tagd export`'s for the file, path aside and the
    faces' cluster and person: grouping faces into people is the library's work
    (after a scan), not one file's."""

    def own(value: Any) -> Any:
        return [{k: v for k, v in f.items() if k not in ("cluster", "person")} for f in value]

    for key, value in exported.items():
        if key == "faces":
            assert own(got[key]) == own(value), key
        elif key != "path":
            assert got[key] == value, key


def test_analyze_an_upload_or_a_library_path_as_tagd_export_has_it(
    library: Library, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        Settings(),
        library=dataclasses.replace(Settings().library, roots=[str(library.folder)]),
        api=dataclasses.replace(Settings().api, max_upload_mb=3),
    )
    served = serve(settings, tmp_path / "state")
    try:
        photo = library.folder / PERSON_PHOTO
        exported = library.export[str(photo)]
        up = post_form(served.base, "/api/v1/analyze", {}, (PERSON_PHOTO, photo.read_bytes()))
        assert up.status == 200, up.body
        assert up.body["path"] == PERSON_PHOTO and up.body["status"] == "ok"
        same_results(up.body, exported)
        assert any(t["name"] == "AI|Objects|person" for t in up.body["tags"])

        # Past the form parser's memory (1 MB): spooled to disk, saved in a thread.
        large = tmp_path / "large.jpg"
        with Image.open(photo) as image:
            image.resize((image.width * 4, image.height * 4)).save(large, quality=98)
        assert 2**20 < large.stat().st_size < 3 * 2**20
        big = post_form(served.base, "/api/v1/analyze", {}, ("large.jpg", large.read_bytes()))
        assert big.status == 200, big.body
        assert big.body["path"] == "large.jpg" and big.body["width"] == 4 * exported["width"]
        assert any(t["name"] == "AI|Objects|person" for t in big.body["tags"])

        by_path = post_form(served.base, "/api/v1/analyze", {"path": str(photo)})
        assert by_path.status == 200, by_path.body
        same_results(by_path.body, exported)

        # Only the analyzers asked for ("text" is the OCR analyzer).
        some = post_form(
            served.base, "/api/v1/analyze", {"path": str(photo), "analyzers": "objects,text"}
        )
        assert some.status == 200 and some.body["analyzers"] == ["objects", "ocr"]
        assert some.body["objects"] == exported["objects"]
        assert {t["name"] for t in some.body["tags"]} <= {t["name"] for t in exported["tags"]}

        # Nothing stays behind: no catalog, no upload.
        scratch = tmp_path / "state" / "tmp"
        from tagd.catalog.catalog import Catalog

        catalog = Catalog(tmp_path / "state" / "catalog.db")  # the server's own catalog
        assert list(catalog.records({})) == []
        catalog.close()
        assert list(scratch.iterdir()) == []

        # What it refuses, each with a problem, and it serves on.
        outside = tmp_path / "elsewhere.jpg"
        outside.write_bytes(photo.read_bytes())
        link = library.folder / "link-out.jpg"
        link.symlink_to(outside)
        try:
            cases = [
                (post_form(served.base, "/api/v1/analyze", {"path": str(outside)}), 403),
                (post_form(served.base, "/api/v1/analyze", {"path": str(link)}), 403),
                (
                    post_form(
                        served.base, "/api/v1/analyze", {"path": f"{library.folder}/../x.jpg"}
                    ),
                    403,
                ),
                (post_form(served.base, "/api/v1/analyze", {}, ("a.jpg", b"hello world")), 415),
                (
                    post_form(
                        served.base, "/api/v1/analyze", {}, ("t.jpg", photo.read_bytes()[:2000])
                    ),
                    422,
                ),
                (
                    post_form(served.base, "/api/v1/analyze", {}, ("big.jpg", b"\xff" * 2**22)),
                    413,
                ),
                (post_form(served.base, "/api/v1/analyze", {"analyzers": "objects"}), 422),
                (
                    post_form(
                        served.base, "/api/v1/analyze", {"path": str(photo), "analyzers": "x"}
                    ),
                    422,
                ),
            ]
        finally:
            link.unlink()
        for reply, status in cases:
            assert_problem(reply, status)
        assert post_form(served.base, "/api/v1/analyze", {"path": str(photo)}).status == 200
        assert list(scratch.iterdir()) == []
    finally:
        served.stop()


# ---------------------------------------------------------------- people, written


def send_json(base: str, route: str, body: dict[str, Any], key: str | None = None) -> Reply:
    request = urllib.request.Request(base + route, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    return reply(request, key)


def test_people_named_split_and_merged_by_an_admin_key(library: Library, tmp_path: Path) -> None:
    import shutil

    state = tmp_path / "state"
    shutil.copytree(library.state, state)  # the module's catalog stays as it was
    read_key, admin_key = "read-key-for-people", "admin-key-for-people"
    api = dataclasses.replace(
        Settings().api,
        api_keys=[
            ApiKey(sha256=key_sha256(read_key), role="read", name="frame"),
            ApiKey(sha256=key_sha256(admin_key), role="admin", name="me"),
        ],
    )
    served = serve(dataclasses.replace(Settings(), api=api), state)
    base = served.base
    try:
        [person] = get(base, "/api/v1/people", read_key).body["people"]
        assert person["faces"] == 2 and person["name"] is None
        pid = person["id"]
        one = get(base, f"/api/v1/people/{pid}", read_key).body
        assert len(one["face_list"]) == 2
        assert {Path(f["path"]).name for f in one["face_list"]} == {PERSON_PHOTO, "mirrored.jpg"}

        # A read key may not change people; an admin key may.
        assert_problem(
            send_json(base, f"/api/v1/people/{pid}/name", {"name": "Alice"}, read_key),
            403,
            "admin",
        )
        named = send_json(base, f"/api/v1/people/{pid}/name", {"name": "Alice"}, admin_key)
        assert named.status == 200 and named.body["name"] == "Alice"
        files = {f["path"]: f["id"] for f in all_files(base, read_key)}
        photo = get(base, f"/api/v1/files/{files[str(library.folder / PERSON_PHOTO)]}", read_key)
        assert "AI|People|Alice" in {t["name"] for t in photo.body["tags"]}
        assert photo.body["delivery"]["xmp"]["state"] == "queued"  # the sidecar is due

        # Split one face off, then merge it back: Alice keeps her name and both faces.
        face = one["face_list"][1]["id"]
        split = send_json(base, f"/api/v1/people/{pid}/split", {"faces": [face]}, admin_key)
        assert split.status == 200, split.body
        [new] = split.body["people"]
        assert new["faces"] == 1 and new["id"] != pid
        merged = send_json(base, f"/api/v1/people/{pid}/merge", {"other": new["id"]}, admin_key)
        assert merged.status == 200 and merged.body == {**merged.body, "faces": 2, "name": "Alice"}

        # Refusals: each a problem a person can act on.
        cases = [
            (send_json(base, f"/api/v1/people/{pid}/merge", {"other": pid}, admin_key), 409),
            (send_json(base, f"/api/v1/people/{pid}/name", {"name": "12"}, admin_key), 409),
            (send_json(base, f"/api/v1/people/{pid}/name", {"name": ""}, admin_key), 422),
            (send_json(base, f"/api/v1/people/{pid}/split", {}, admin_key), 422),
            (send_json(base, "/api/v1/people/999/name", {"name": "Bob"}, admin_key), 404),
            (get(base, "/api/v1/people/999", read_key), 404),
        ]
        for reply, status in cases:
            assert_problem(reply, status)
    finally:
        served.stop()


# ---------------------------------------------------------------- previews


def fetch_bytes(url: str) -> tuple[int, dict[str, str], bytes]:
    return exchange(urllib.request.Request(url), timeout=30)


def test_previews_come_from_the_scan_and_never_decode_the_original_again(
    library: Library, tmp_path: Path
) -> None:
    import io

    thumbs = library.state / "thumbs"
    made = sorted(thumbs.glob("*.webp"))
    assert len(made) == 5  # one per content, written by the scan
    ids = {f["path"]: f["id"] for f in all_files(library.base)}
    photo = library.folder / PERSON_PHOTO
    status, headers, body = fetch_bytes(f"{library.base}/api/v1/files/{ids[str(photo)]}/thumbnail")
    assert status == 200 and headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(body)) as preview, Image.open(photo) as original:
        assert preview.format == "WEBP" and max(preview.size) == 320
        ratio = original.width / original.height
        assert abs(preview.width / preview.height - ratio) < 0.02
    assert headers["cache-control"].startswith("private") and headers["etag"]

    # Each face has one too, cut from the decode the scan made.
    [person] = get(library.base, "/api/v1/people").body["people"]
    faces = get(library.base, f"/api/v1/people/{person['id']}").body["face_list"]
    assert len(list((thumbs / "faces").glob("*.webp"))) == len(faces) == 2
    for face in faces:
        status, headers, body = fetch_bytes(f"{library.base}/api/v1/faces/{face['id']}/thumbnail")
        assert status == 200 and headers["content-type"] == "image/webp"
        with Image.open(io.BytesIO(body)) as preview:
            x0, y0, x1, y1 = face["box"]
            assert max(preview.size) <= 160
            assert abs(preview.width / preview.height - (x1 - x0) / (y1 - y0)) < 0.35
    status, headers, _ = fetch_bytes(f"{library.base}/api/v1/faces/999999/thumbnail")
    assert status == 404 and headers["content-type"].startswith(PROBLEM)
    # Made again from the photo when missing.
    for path in (thumbs / "faces").glob("*.webp"):
        path.unlink()
    status, _, _ = fetch_bytes(f"{library.base}/api/v1/faces/{faces[0]['id']}/thumbnail")
    assert status == 200 and len(list((thumbs / "faces").glob("*.webp"))) == 1

    # A catalog from before previews: one is made from the original, then kept.
    for path in made:
        path.unlink()
    status, _, again = fetch_bytes(f"{library.base}/api/v1/files/{ids[str(photo)]}/thumbnail")
    assert status == 200 and len(list(thumbs.glob("*.webp"))) == 1
    assert Image.open(io.BytesIO(again)).format == "WEBP"
    status, headers, body = fetch_bytes(f"{library.base}/api/v1/files/999999/thumbnail")
    assert status == 404 and headers["content-type"].startswith(PROBLEM)


def test_metrics_agree_with_the_status(library: Library) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(library.base + "/api/v1/metrics", timeout=30) as answer:
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    files = get(library.base, "/api/v1/status").body["files"]
    for status in ("ok", "pending", "error"):
        assert samples[("tagd_files", (("status", status),))] == files[status]
    assert samples[("tagd_files_by_kind", (("kind", "image"),))] == files["images"] == 5
    assert samples[("tagd_scans_total", ())] >= 1
    assert samples[("tagd_files_analysed_total", ())] == 5
    assert samples[("tagd_last_scan_files_per_second", ())] > 0
