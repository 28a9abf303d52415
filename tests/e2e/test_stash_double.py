"""The Stash stand-in itself (tests/stash_server.py) against what Stash's server
code does: LIKE matching, uniqueness messages, old versions, gqlgen's statuses,
bulk updates and their hooks, markers, paging and sorting, authentication.
Requests go over HTTP exactly as tagd sends them, without tagd."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from stash_server import TRIPWIRE_MESSAGE, StashServer, natural_less, sql_like


@pytest.fixture
def stash() -> Iterator[StashServer]:
    server = StashServer().start()
    yield server
    server.mode = "ok"
    server.stop()


def post(
    server: StashServer, query: str, variables: dict[str, Any] | None = None, key: str = ""
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["ApiKey"] = key
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(server.url, body, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def answer(server: StashServer, query: str, variables: dict[str, Any] | None = None) -> Any:
    status, _, body = post(server, query, variables)
    return status, json.loads(body)


FIND_TAGS = """query T($f: TagFilterType, $p: FindFilterType) {
  findTags(tag_filter: $f, filter: $p) { count tags { id name } } }"""
CREATE_TAG = "mutation C($input: TagCreateInput!) { tagCreate(input: $input) { id name } }"
LIST_IMAGES = """query L($p: FindFilterType, $f: ImageFilterType) {
  findImages(filter: $p, image_filter: $f) { count images { id } } }"""
BULK_IMAGES = "mutation B($input: BulkImageUpdateInput!) { bulkImageUpdate(input: $input) { id } }"
CREATE_MARKER = (
    "mutation M($input: SceneMarkerCreateInput!) { sceneMarkerCreate(input: $input) { id } }"
)


def test_like_is_sqlites() -> None:
    assert sql_like("Female Breast Exposed", "FEMALE_BREAST_EXPOSED")
    assert sql_like("tagd Tagged", "tagd_Tagged") and not sql_like("tagd_Tagged", "tagd Tagged")
    assert sql_like("/data/clipX1000.jpg", "/data/clip_1%.jpg")
    assert not sql_like("Émile", "émile")  # ASCII letters only fold
    assert sql_like("D:\\Media\\a.jpg", "d:\\media\\A.JPG")  # no ESCAPE: '\' is itself
    assert natural_less("a2", "a10") and natural_less("A1", "b") and natural_less("x", "x0")


def test_equals_finds_like_matches_and_not_equals_the_rest(stash: StashServer) -> None:
    st = stash.state
    st.add_tag("Female Breast Exposed")
    st.add_tag("person", aliases=["human_being"])
    st.add_tag("Personal")
    f = {"name": {"value": "FEMALE_BREAST_EXPOSED", "modifier": "EQUALS"}}
    _, got = answer(stash, FIND_TAGS, {"f": f})
    assert [t["name"] for t in got["data"]["findTags"]["tags"]] == ["Female Breast Exposed"]
    f = {"aliases": {"value": "HUMAN BEING", "modifier": "EQUALS"}}
    _, got = answer(stash, FIND_TAGS, {"f": f})
    assert got["data"]["findTags"]["tags"] == []  # ' ' in the value is not a wildcard
    f = {"name": {"value": "person%", "modifier": "NOT_EQUALS"}}
    _, got = answer(stash, FIND_TAGS, {"f": f})
    assert [t["name"] for t in got["data"]["findTags"]["tags"]] == ["Female Breast Exposed"]
    st.add_image("/data/a_b.jpg")
    st.add_image("/data/aXb.jpg")
    f = {"path": {"value": "/data/a_b.jpg", "modifier": "EQUALS"}}
    _, got = answer(stash, LIST_IMAGES, {"f": f})
    assert got["data"]["findImages"]["count"] == 2
    assert stash.invalid == []


def test_names_stash_likens_are_refused_with_its_messages(stash: StashServer) -> None:
    st = stash.state
    st.add_tag("Female Breast Exposed", aliases=["FBE"])
    status, got = answer(stash, CREATE_TAG, {"input": {"name": " FEMALE_BREAST_EXPOSED "}})
    assert status == 200 and got["data"] == {"tagCreate": None}
    assert got["errors"] == [
        {
            "message": "tag with name 'FEMALE_BREAST_EXPOSED' already exists",
            "path": ["tagCreate"],
        }
    ]
    _, got = answer(stash, CREATE_TAG, {"input": {"name": "fb_"}})
    assert got["errors"][0]["message"] == "name 'fb_' is used as alias for 'Female Breast Exposed'"
    _, got = answer(stash, CREATE_TAG, {"input": {"name": "  New  "}})
    assert got["data"]["tagCreate"]["name"] == "New"  # trimmed as Stash does
    _, got = answer(stash, CREATE_TAG, {"input": {"name": "   "}})
    assert got["errors"][0]["message"] == "tag name must not be blank"

    st.add_performer("Dana", disambiguation="actress")
    create = "mutation P($i: PerformerCreateInput!) { performerCreate(input: $i) { id } }"
    _, got = answer(stash, create, {"i": {"name": "dan_", "disambiguation": "ACTRESS"}})
    assert got["errors"][0]["message"] == (
        "performer with name 'dan_' and disambiguation 'ACTRESS' already exists"
    )
    _, got = answer(stash, create, {"i": {"name": "Dana"}})  # no disambiguation: free
    assert got["data"]["performerCreate"]["id"]
    _, got = answer(stash, create, {"i": {"name": "D%"}})
    assert got["errors"][0]["message"] == "performer with name 'D%' already exists"

    st.add_studio("ACME Inc.", aliases=["Acme Studios"])
    create = "mutation S($i: StudioCreateInput!) { studioCreate(input: $i) { id } }"
    _, got = answer(stash, create, {"i": {"name": "acme_inc_"}})
    assert got["errors"][0]["message"] == "studio with name 'acme_inc_' already exists"
    _, got = answer(stash, create, {"i": {"name": "Acme", "aliases": ["acme%studios"]}})
    assert got["errors"][0]["message"] == "name 'acme%studios' is used as alias for 'ACME Inc.'"
    assert st.studio_by_name("Acme") is None  # nothing left behind
    assert stash.invalid == []


def test_a_stash_before_0_28_refuses_end_seconds_as_gqlgen_does() -> None:
    old = StashServer(version="v0.27.0").start()
    try:
        tag = old.state.add_tag("t")
        scene = old.state.add_scene("/data/a.mp4")
        status, got = answer(old, "{ version { version } }")
        assert (status, got) == (200, {"data": {"version": {"version": "v0.27.0"}}})
        marker = {"title": "m", "seconds": 1.0, "scene_id": scene, "primary_tag_id": tag}
        status, got = answer(old, CREATE_MARKER, {"input": {**marker, "end_seconds": 2.0}})
        assert status == 422 and got["data"] is None
        assert got["errors"] == [
            {
                "message": "unknown field",
                "path": ["variable", "input", "end_seconds"],
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
        ]
        status, got = answer(old, "{ findSceneMarkers { scene_markers { end_seconds } } }")
        assert status == 422
        [error] = got["errors"]
        assert error["message"] == (
            'Cannot query field "end_seconds" on type "SceneMarker". Did you mean "seconds"?'
        )
        assert answer(old, CREATE_MARKER, {"input": marker})[0] == 200  # without: fine
        assert old.invalid == [] and len(old.refused_by_version) == 2
        answer(old, "{ nosuchfield }")  # wrong for every version: invalid
        assert len(old.invalid) == 1 and len(old.refused_by_version) == 2
    finally:
        old.stop()


def test_validation_is_422_and_resolver_errors_are_200(stash: StashServer) -> None:
    status, got = answer(stash, "{ nosuchfield }")
    assert status == 422 and got["data"] is None
    assert got["errors"][0]["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    stash.invalid.clear()
    status, got = answer(stash, "mutation D($id: ID!) { sceneMarkerDestroy(id: $id) }", {"id": 4})
    assert status == 200 and got["data"] is None  # Boolean!: the null reaches data
    assert got["errors"] == [
        {"message": "scene marker with id 4 not found", "path": ["sceneMarkerDestroy"]}
    ]


def test_a_bulk_update_with_an_unknown_id_changes_nothing(stash: StashServer) -> None:
    st = stash.state
    dog = st.add_tag("dog")
    a, b = st.add_image("/data/a.jpg"), st.add_image("/data/b.jpg")
    change = {"tag_ids": {"ids": [dog], "mode": "ADD"}}
    status, got = answer(stash, BULK_IMAGES, {"input": {"ids": [a, "99", b], **change}})
    assert status == 200 and got["data"] == {"bulkImageUpdate": None}
    assert got["errors"][0]["message"] == "image with id 99 not found"
    assert st.images[a].tag_ids == [] and st.images[b].tag_ids == []
    _, got = answer(
        stash, BULK_IMAGES, {"input": {"ids": [a], "tag_ids": {"ids": ["77"], "mode": "ADD"}}}
    )
    assert got["errors"][0]["message"].endswith(f"[[{a} 77]]: FOREIGN KEY constraint failed")
    scenes = "mutation S($input: BulkSceneUpdateInput!) { bulkSceneUpdate(input: $input) { id } }"
    s = st.add_scene("/data/s.mp4")
    _, got = answer(stash, scenes, {"input": {"ids": [s, "98"], **change}})
    assert got["errors"][0]["message"] == (
        "error executing `INSERT INTO scenes_tags (scene_id, tag_id) VALUES (?, ?) "
        f"ON CONFLICT (scene_id, tag_id) DO NOTHING` [[98 {dog}]]: FOREIGN KEY constraint failed"
    )
    assert st.scenes[s].tag_ids == []
    assert stash.invalid == []


def test_update_hooks_run_one_object_at_a_time_and_the_write_outlives_the_client() -> None:
    server = StashServer(hook_seconds=0.1).start()
    try:
        dog = server.state.add_tag("dog")
        ids = [server.state.add_image(f"/data/{n}.jpg") for n in range(5)]
        payload = {"ids": ids, "tag_ids": {"ids": [dog], "mode": "ADD"}}
        start = time.monotonic()
        assert answer(server, BULK_IMAGES, {"input": payload})[0] == 200
        assert time.monotonic() - start >= 0.5
        # A client that gives up after 0.15 s: Stash has written already.
        payload["tag_ids"]["mode"] = "REMOVE"
        body = json.dumps({"query": BULK_IMAGES, "variables": {"input": payload}}).encode()
        request = urllib.request.Request(server.url, body, {"Content-Type": "application/json"})
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            urllib.request.urlopen(request, timeout=0.15)
        assert all(server.state.images[i].tag_ids == [] for i in ids)
        # Reads go on while the hooks run.
        assert answer(server, "{ version { version } }")[0] == 200
    finally:
        server.stop()


def test_marker_end_before_start_is_refused(stash: StashServer) -> None:
    tag, scene = stash.state.add_tag("t"), stash.state.add_scene("/data/a.mp4")
    marker = {"title": "m", "seconds": 5.0, "end_seconds": 1.5, "scene_id": scene}
    _, got = answer(stash, CREATE_MARKER, {"input": {**marker, "primary_tag_id": tag}})
    assert got["errors"][0]["message"] == (
        "end_seconds (1.500000) must be greater than or equal to seconds (5.000000)"
    )
    update = (
        "mutation U($input: SceneMarkerUpdateInput!) { sceneMarkerUpdate(input: $input) { id } }"
    )
    _, got = answer(stash, update, {"input": {"id": "41", "seconds": 1.0}})
    assert got["errors"][0]["message"] == "scene marker with id 41 not found"
    assert stash.state.markers == {}


def test_paging_and_sorting(stash: StashServer) -> None:
    st = stash.state
    for name in ("b10.jpg", "b9.jpg", "a.jpg"):
        st.add_image(f"/data/{name}")
    ids = list(st.images)

    def listed(find: dict[str, Any]) -> tuple[int, list[str]]:
        _, got = answer(stash, LIST_IMAGES, {"p": find})
        found = got["data"]["findImages"]
        return found["count"], [i["id"] for i in found["images"]]

    assert listed({"per_page": 0}) == (3, [])
    assert listed({"per_page": -1}) == (3, ids)
    assert listed({}) == (3, ids)  # no sort: id order
    assert listed({"sort": "path"}) == (3, [ids[2], ids[1], ids[0]])  # natural: b9 < b10
    assert listed({"sort": "path", "direction": "DESC", "per_page": 1, "page": 2})[1] == [ids[1]]
    assert listed({"sort": "id", "direction": "DESC"})[1] == ids[::-1]
    _, got = answer(stash, LIST_IMAGES, {"p": {"sort": "name"}})
    assert got["errors"][0]["message"] == "invalid sort: name"
    for name in ("beta", "Alpha", "alpha2"):
        st.add_tag(name)
    _, got = answer(stash, FIND_TAGS, {"p": {"per_page": 2}})
    assert got["data"]["findTags"]["count"] == 3
    assert [t["name"] for t in got["data"]["findTags"]["tags"]] == ["Alpha", "alpha2"]
    assert stash.invalid == []


@pytest.mark.parametrize(("server_key", "sent"), [("secret", ""), ("secret", "wrong"), ("", "x")])
def test_a_missing_or_wrong_key_is_401_with_an_empty_body(server_key: str, sent: str) -> None:
    server = StashServer(api_key=server_key).start()
    try:
        status, headers, body = post(server, "{ version { version } }", key=sent)
        assert (status, body, headers.get("WWW-Authenticate")) == (401, b"", "FormBased")
        assert post(server, "{ version { version } }", key=server_key)[0] == 200
    finally:
        server.stop()


def test_the_tripwire_is_403_with_stashs_text(stash: StashServer) -> None:
    stash.mode = "tripwire"
    status, headers, body = post(stash, "{ version { version } }")
    assert status == 403 and body.decode() == TRIPWIRE_MESSAGE + "\n"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
