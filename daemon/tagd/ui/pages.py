"""The pages: `/` (overview), `/people`, `/review`, `/dupes`, `/search`,
`/files/{id}`, `/status`, signing in and out.

Each page reads the catalog in the request's thread, as the API's routes do,
and renders a template; what a page changes it changes through the API's own
routes (tagd.js), so the checks, the re-derived tags and the queued sidecar
and Stash writes are the same as for any client.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from tagd import __version__
from tagd.api.auth import Caller, authorize, key_sha256, match_key
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.catalog.browse import FileFilters
from tagd.cli.export_cmd import file_results
from tagd.cli.report_cmds import status_report
from tagd.dupes import Group, Member, Photo, groups, groups_of, similar_to, stored_components
from tagd.paths import shown
from tagd.people.suggest import suggestions
from tagd.policy.learning import TARGET, learned
from tagd.quarantine import count_moved
from tagd.quarantine import days as quarantine_days
from tagd.search import Filters, search
from tagd.ui.session import COOKIE, MAX_AGE, sign, verify

FACES_SHOWN = 8  # face thumbnails per person on /people
PEOPLE_PAGE = 60  # clusters per /people page: a page stays light with 1,000 of them
DUPES_PAGE = 50  # groups per page
REVIEW_PAGE = 60  # tags per review page: a sitting's worth without a long page
SEARCH_PAGE = 60  # results per search
SUGGESTIONS_SHOWN = 12  # "is this Alice?" questions per review page
# Shown as they are on a file page (else its preview): what browsers decode.
ORIGINAL_FORMATS = {"jpg", "jpeg", "png", "gif", "webp"}
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)


class SignIn(Exception):
    """The page needs a signed-in browser: answered with a redirect to /login."""


def viewer(request: Request, state: Annotated[ApiState, Depends(api_state)]) -> Caller:
    """Who looks at the page; SignIn when nobody is signed in and a key is needed."""
    keys = state.settings.api.api_keys
    client = request.client.host if request.client else None
    signed_in = verify(state.ui_secret, request.cookies.get(COOKIE)) if keys else None
    try:
        return authorize(keys, None, client, "read", signed_in)
    except Problem as problem:
        if keys:
            raise SignIn() from None
        raise problem


Viewer = Annotated[Caller, Depends(viewer)]
State = Annotated[ApiState, Depends(api_state)]


def render(request: Request, page: str, caller: Caller, **values: Any) -> HTMLResponse:
    state: ApiState = request.app.state.tagd
    return templates.TemplateResponse(
        request,
        f"{page}.html",
        {
            "page": page,
            "caller": caller,
            "admin": caller.role == "admin",
            "keys": bool(state.settings.api.api_keys),
            "daemon": state.daemon is not None,
            "version": __version__,
            **values,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, state: State, caller: Viewer) -> HTMLResponse:
    with state.catalog() as catalog:
        report = status_report(catalog, state.shas, state.state_dir)
        people, named = catalog.people_counts()
    return render(
        request,
        "overview",
        caller,
        report=report,
        live=state.snapshot(),
        people=people,
        named=named,
    )


@router.get("/people", response_class=HTMLResponse)
def people(
    request: Request, state: State, caller: Viewer, hidden: bool = False, page: int = 1
) -> HTMLResponse:
    """The clusters to name (`hidden`: those hidden as strangers instead), biggest
    first, PEOPLE_PAGE at a time."""
    with state.catalog() as catalog:
        everyone = catalog.people()
        # Every name, hidden people's too: the autocomplete.
        names = sorted({p.name for p in everyone if p.name}, key=str.casefold)
        others = sum(1 for p in everyone if p.hidden != hidden)
        everyone = [p for p in everyone if p.hidden == hidden and p.faces]
        # Biggest first: the clusters that name the most faces at once.
        everyone.sort(key=lambda p: (-p.faces, p.id))
        pages = max(1, -(-len(everyone) // PEOPLE_PAGE))
        page = min(max(page, 1), pages)
        total = len(everyone)
        everyone = everyone[(page - 1) * PEOPLE_PAGE : page * PEOPLE_PAGE]
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "label": p.label,
                "faces": p.faces,
                "face_ids": [f.detection_id for f in catalog.faces_of(p.id)[:FACES_SHOWN]],
                "example": shown(p.example) if p.example else "",
                "hidden": p.hidden,
            }
            for p in everyone
        ]
        waiting = catalog.waiting_faces()
    return render(
        request,
        "people",
        caller,
        rows=rows,
        names=names,
        waiting=waiting,
        hidden=hidden,
        others=others,
        number=page,
        pages=pages,
        total=total,
    )


@router.get("/review", response_class=HTMLResponse)
def review(
    request: Request,
    state: State,
    caller: Viewer,
    tag: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> HTMLResponse:
    """Tags the models are least sure of, a grid to accept or reject."""
    band = state.settings.tags.review
    low = min(max(band.low if low is None else low, 0.0), 1.0)
    high = min(max(band.high if high is None else high, 0.0), 1.0)
    with state.catalog() as catalog:
        items = catalog.review_items(low, high, tag or None, REVIEW_PAGE)
        counts = catalog.review_tags(low, high)
        thresholds = learned(catalog, state.settings)
        # "Is this …?" on the queue as it opens; a narrowed grid is about tags only.
        narrowed = tag or (low, high) != (band.low, band.high)
        people = [] if narrowed else suggestions(catalog, state.settings, SUGGESTIONS_SHOWN)
    return render(
        request,
        "review",
        caller,
        items=items,
        counts=counts,
        thresholds=thresholds,
        people=people,
        target=TARGET,
        tag=tag or "",
        low=low,
        high=high,
        short=lambda name: name.rsplit("|", 1)[-1],
    )


@router.get("/dupes", response_class=HTMLResponse)
def dupes(request: Request, state: State, caller: Viewer) -> HTMLResponse:
    """Near-duplicate groups nobody settled yet, the suggested keeper first."""
    with state.catalog() as catalog:
        verdicts = catalog.dupe_verdicts()
        distinct = {pair for pair, v in verdicts.items() if v == "distinct"}
        shown_groups = [
            {
                "reason": g.reason,
                "contents": sorted({p.content_id for p in (g.keep, *(m.photo for m in g.others))}),
                "members": [
                    _dupe_member(catalog, p, m)
                    for p, m in [(g.keep, None), *((m.photo, m) for m in g.others)]
                ],
            }
            for g in _unsettled(catalog, state.settings.duplicates.threshold, distinct, verdicts)
        ]
    # One line a day (Restore puts a day back in every root), with its roots.
    quarantined: dict[str, dict[str, Any]] = {}
    for root, day in quarantine_days(state.settings.library.roots):
        line = quarantined.setdefault(day.isoformat(), {"files": 0, "roots": []})
        line["files"] += count_moved(root, day)
        line["roots"].append(root)
    copies = sum(len(g["members"]) - 1 for g in shown_groups)
    return render(
        request,
        "dupes",
        caller,
        groups=shown_groups,
        copies=copies,
        quarantined=quarantined,
        retention=state.settings.duplicates,
    )


def _unsettled(
    catalog: Any,
    threshold: int,
    distinct: set[tuple[int, int]],
    verdicts: dict[tuple[int, int], str],
) -> list[Group]:
    """The first DUPES_PAGE groups not looked at and all kept. From the stored
    pairs only those groups are read; else every photo is compared here."""

    def settled(contents: Sequence[int]) -> bool:
        pairs = list(combinations(sorted(set(contents)), 2))
        return bool(pairs) and all(verdicts.get(pair) == "kept" for pair in pairs)

    components = stored_components(catalog, threshold, distinct)
    if components is None:
        every = groups(catalog, threshold, distinct)
        found = [g for g in every if not settled([p.content_id for p in _members(g)])]
        return found[:DUPES_PAGE]
    waiting = [m for m in components if not settled(m)]
    out: list[Group] = []
    # A component can lose its files (gone since the scan): read a few more.
    for start in range(0, len(waiting), DUPES_PAGE):
        out += groups_of(catalog, waiting[start : start + DUPES_PAGE])
        if len(out) >= DUPES_PAGE:
            break
    return out[:DUPES_PAGE]


def _members(g: Group) -> list[Photo]:
    return [g.keep, *(m.photo for m in g.others)]


def _dupe_member(catalog: Any, photo: Photo, member: Member | None) -> dict[str, Any]:
    found = catalog.file_by_path(photo.path)
    return {
        "file_id": found.id if found else None,
        "path": shown(photo.path),
        "size": photo.size,
        "width": photo.width,
        "height": photo.height,
        "format": photo.format[1],
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(photo.mtime_ns / 1e9)),
        "keep": member is None,
        "distance": member.distance if member else 0,
        "mirrored": bool(member and member.mirrored),
    }


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request,
    state: State,
    caller: Viewer,
    q: str = "",
    tag: str = "",
    person: str = "",
    kind: str = "",
    like: int | None = None,
) -> HTMLResponse:
    """Words (tags, text, people, CLIP), a tag or person filter, or the files most
    like one (`like`): a grid of results, each linking to its file page."""
    q, tag, person = q.strip()[:1000], tag.strip()[:500], person.strip()[:200]
    kind = kind if kind in ("image", "video") else ""
    with state.catalog() as catalog:
        hits, how = _found(catalog, state, q, tag, person, kind, like)
        results = []
        for path, score in hits:
            found = catalog.file_by_path(path)
            if found is not None:
                results.append({"file_id": found.id, "path": shown(path), "score": score})
        tags = [name for name, _ in catalog.tag_file_counts()]
        names = sorted({p.name for p in catalog.people() if p.name}, key=str.casefold)
    return render(
        request,
        "search",
        caller,
        q=q,
        tag=tag,
        person=person,
        kind=kind,
        like=like,
        how=how,
        results=results,
        tags=tags,
        names=names,
    )


def _found(
    catalog: Any,
    state: ApiState,
    q: str,
    tag: str,
    person: str,
    kind: str,
    like: int | None,
) -> tuple[list[tuple[str, float | None]], str]:
    """(path, score) of the results, and what they answer, in words."""
    if like is not None:
        item = catalog.listed_file(state.shas, like)
        if item is None:
            return [], f"no file {like}"
        signal, unit, similar = similar_to(
            catalog, item.record.content_id, item.record.path, SEARCH_PAGE
        )
        return [
            (h.path, h.score) for h in similar
        ], f"most like {shown(item.record.path)} ({signal}, {unit})"
    if q:
        filters = Filters(tag=tag or None, person=person or None, kind=kind or None)
        hits = search(catalog, state.settings, state.models_dir, q, filters, SEARCH_PAGE)
        return [(h.path, h.score) for h in hits], f"best matches for “{q}”"
    if tag:
        page = catalog.file_page(
            state.shas, FileFilters(kind=kind or None, tag=tag), 0, SEARCH_PAGE
        )
        return [(f.record.path, None) for f in page], f"files tagged {tag}"
    # Nothing asked: the library as catalogued, to browse and pick examples from.
    filters = FileFilters(kind=kind or None)
    page = catalog.file_page(state.shas, filters, 0, SEARCH_PAGE)
    return [(f.record.path, None) for f in page], "the library, first catalogued first"


@router.get("/files/{file_id}", response_class=HTMLResponse)
def file_page(request: Request, state: State, caller: Viewer, file_id: int) -> HTMLResponse:
    """One file: its picture with every box and face drawn, its tags (to accept
    or reject), text, people and, for a video, its tags' time ranges."""
    with state.catalog() as catalog:
        item = catalog.listed_file(state.shas, file_id)
        if item is None:
            raise Problem(404, "no-such-file", f"no file {file_id} in the catalog")
        record = item.record
        data = file_results(catalog, record)
        cid = record.content_id
        tags = catalog.tags(cid) if cid else []
        verdicts = catalog.verdicts_of(cid) if cid else {}
    ext = Path(record.path).suffix.lower().lstrip(".")
    return render(
        request,
        "file",
        caller,
        file_id=file_id,
        data=data,
        path=shown(record.path),
        content_id=cid,
        tags=tags,
        verdicts=verdicts,
        original=record.kind == "image" and ext in ORIGINAL_FORMATS,
        # The boxes sure enough to make a tag; the others are counted, not drawn.
        objects=[
            o
            for o in data.get("objects", [])
            if o["score"] >= state.settings.tags.objects.threshold
        ],
        # Labels about as tall on the screen whatever the photo's size.
        label_size=max(12, round(max(record.width or 0, record.height or 0) / 40)),
        timeline=_timeline(data),
        short=lambda name: name.rsplit("|", 1)[-1],
    )


def _timeline(data: dict[str, Any]) -> list[dict[str, Any]]:
    """A video's tags as rows of ranges, in percent of its length."""
    duration = data.get("duration") or 0
    if data.get("kind") != "video" or duration <= 0:
        return []
    rows: dict[str, list[dict[str, float]]] = {}
    for seg in data.get("segments", []):
        start, end = max(0.0, seg["start"]), min(duration, seg["end"])
        rows.setdefault(seg["tag"], []).append(
            {
                "left": 100 * start / duration,
                "width": max(0.5, 100 * (end - start) / duration),
                "start": start,
                "end": end,
            }
        )
    return [{"tag": tag, "ranges": ranges} for tag, ranges in sorted(rows.items())]


@router.get("/status", response_class=HTMLResponse)
def status(request: Request, state: State, caller: Viewer) -> HTMLResponse:
    with state.catalog() as catalog:
        report = status_report(catalog, state.shas, state.state_dir)
    return render(request, "status", caller, report=report, live=state.snapshot())


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: State, next: str = "/") -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next": _local(next), "error": "", "version": __version__, "page": "login"},
    )


@router.post("/login", response_model=None)
def login(
    request: Request, state: State, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    keys = state.settings.api.api_keys
    found = match_key(keys, key.strip()) if keys else None
    if found is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {
                "next": _local(next),
                "error": "That key is not one of [api] api_keys." if keys else "No key is needed.",
                "version": __version__,
                "page": "login",
            },
            status_code=401 if keys else 400,
        )
    answer = RedirectResponse(_local(next), status_code=303)
    answer.set_cookie(
        COOKIE,
        sign(state.ui_secret, key_sha256(key.strip())),
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/logout")
def logout() -> RedirectResponse:
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


def _local(target: str) -> str:
    """Only a path of this site to go back to: never another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def sign_in_redirect(request: Request, exc: SignIn) -> RedirectResponse:
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(back)}", status_code=303)
