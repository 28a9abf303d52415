// tagd's pages: every change goes through the API (/api/v1), same origin, so the
// browser sends the sign-in cookie and the server's checks are the API's own.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function toast(text, bad = false) {
  const box = $("#toast");
  box.textContent = text;
  box.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ""; }, bad ? 6000 : 2500);
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch("/api/v1" + path, init);
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    const why = (data && data.detail) || answer.statusText;
    toast(why, true);
    throw new Error(why);
  }
  return data;
}

// A keyboard cursor over the items `selector` finds (j/k and the like): the one
// it is on is outlined, focused and scrolled into view.
function cursor(selector) {
  let index = -1;
  const items = () => $$(selector);
  return {
    items,
    get index() { return index; },
    current: () => items()[index],
    move(to) {
      const all = items();
      if (!all.length) return;
      index = Math.max(0, Math.min(all.length - 1, to));
      all.forEach((item, j) => item.classList.toggle("current", j === index));
      all[index].focus();
      all[index].scrollIntoView({ block: "nearest" });
    },
  };
}

// ------------------------------------------------------------------ people

function peoplePage() {
  const rows = $$(".person");
  const cursorRows = cursor(".person");
  const byName = (name) => rows.find((r) => r.dataset.name.toLowerCase() === name.toLowerCase());

  // Give `ids` the name `name`: a name someone already has merges them into that
  // person; otherwise the first is named and the others merged into it.
  async function nameAll(ids, name) {
    const known = byName(name);
    let target = known ? known.dataset.person : ids[0];
    if (!known) await api("POST", `/people/${target}/name`, { name });
    for (const id of ids) {
      if (id !== target) await api("POST", `/people/${target}/merge`, { other: Number(id) });
    }
    toast(`${ids.length > 1 ? ids.length + " clusters" : "Cluster"} named ${name}`);
    setTimeout(() => location.reload(), 400);
  }

  // Faces picked in a row: "not this person" or "split off" act on them.
  const pickedFaces = (row) => $$(".face[aria-pressed=true]", row).map((f) => Number(f.dataset.face));
  const refresh = (row) => {
    const some = pickedFaces(row).length > 0;
    $$("[data-do=reject], [data-do=split]", row).forEach((b) => { b.disabled = !some; });
  };
  const toggleFace = (face) => {
    face.setAttribute("aria-pressed", face.getAttribute("aria-pressed") === "true" ? "false" : "true");
    refresh(face.closest(".person"));
  };
  $$(".face").forEach((face) => face.addEventListener("click", () => toggleFace(face)));

  async function act(row, what) {
    const id = row.dataset.person;
    const faces = pickedFaces(row);
    try {
      if (what === "reject") {
        for (const f of faces) await api("POST", `/people/${id}/faces/${f}/reject`);
        toast(`${faces.length} face${faces.length > 1 ? "s" : ""} taken out`);
      } else if (what === "split") {
        await api("POST", `/people/${id}/split`, { faces });
        toast("Split off as a new cluster");
      } else if (what === "hide" || what === "show") {
        await api("POST", `/people/${id}/hide`, { hidden: what === "hide" });
        toast(what === "hide" ? "Hidden as strangers" : "Shown again");
      } else return;
      setTimeout(() => location.reload(), 400);
    } catch (e) { /* the toast says why */ }
  }
  $$(".row-actions button").forEach((b) => b.addEventListener("click", () => act(b.closest(".person"), b.dataset.do)));

  $$("form.name").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = form.elements.name.value.trim();
      if (!name) return;
      const id = form.dataset.person;
      const row = form.closest(".person");
      if (row.dataset.name === name) return;
      try { await nameAll([id], name); } catch (e) { /* the toast says why */ }
    });
  });

  const bulk = $("#bulk");
  const picked = () => $$(".person .pick:checked").map((b) => b.closest(".person").dataset.person);
  const count = () => { if (bulk) $("#selected-count").textContent = `${picked().length} selected`; };
  $$(".pick").forEach((box) => box.addEventListener("change", count));
  if (bulk) {
    bulk.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = bulk.elements.name.value.trim();
      const ids = picked();
      if (!name || !ids.length) { toast("Select clusters and give a name", true); return; }
      try { await nameAll(ids, name); } catch (e) { /* the toast says why */ }
    });
  }

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea")) return;
    const row = cursorRows.current();
    if (event.key === "j") cursorRows.move(cursorRows.index + 1);
    else if (event.key === "k") cursorRows.move(cursorRows.index - 1);
    else if (!row) return;
    else if (event.key === "n") {
      const input = $("form.name input", row);
      if (input) { event.preventDefault(); input.focus(); input.select(); }
    } else if (event.key === "x") {
      const box = $(".pick", row);
      if (box) { box.checked = !box.checked; count(); }
    } else if (/^[1-8]$/.test(event.key)) {
      const face = $$(".face", row)[Number(event.key) - 1];
      if (face) toggleFace(face);
    } else if (({ r: "reject", s: "split", h: "hide" })[event.key]) {
      const what = { r: "reject", s: "split", h: "hide" }[event.key];
      const button = $(`[data-do=${what}]`, row);
      if (button && !button.disabled) act(row, what);
    }
  });
}

// ------------------------------------------------------------------ review

function reviewPage() {
  const cards = cursor(".card-item:not(.done)");
  async function decide(card, verdict) {
    if (verdict !== "skip") {
      try {
        await api("POST", "/review", {
          content_id: Number(card.dataset.content), tag: card.dataset.tag, verdict,
        });
      } catch (e) { return; /* the toast says why */ }
    }
    card.classList.add("done", verdict);
    card.dataset.verdict = verdict;
    cards.move(cards.index);
  }
  $$(".card-item [data-verdict]").forEach((b) =>
    b.addEventListener("click", () => decide(b.closest(".card-item"), b.dataset.verdict)));
  $$("#suggestions [data-suggestion]").forEach((b) => b.addEventListener("click", async () => {
    const card = b.closest(".suggestion");
    const what = b.dataset.suggestion;
    try {
      await api("POST", `/people/${card.dataset.person}/${what}`, { other: Number(card.dataset.cluster) });
    } catch (e) { return; /* the toast says why */ }
    card.classList.add("done", what === "merge" ? "accept" : "reject");
    $$("button", card).forEach((x) => { x.disabled = true; });
  }));
  $$("#thresholds [data-threshold]").forEach((b) => b.addEventListener("click", async () => {
    const tag = b.closest("tr").dataset.tag;
    try {
      await api("POST", "/review/thresholds", { tag, threshold: Number(b.dataset.threshold) });
    } catch (e) { return; /* the toast says why */ }
    toast(`${tag}: threshold ${b.dataset.threshold} written to the config`);
    b.disabled = true;
  }));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    const keys = { j: 1, ArrowRight: 1, ArrowDown: 1, k: -1, ArrowLeft: -1, ArrowUp: -1 };
    if (keys[event.key]) { event.preventDefault(); cards.move(cards.index + keys[event.key]); return; }
    const verdict = { a: "accept", x: "reject", s: "skip" }[event.key];
    if (verdict) {
      if (cards.index < 0) cards.move(0);
      const card = cards.current();
      const answer = { accept: "merge", reject: "refuse" }[verdict];
      if (card && card.classList.contains("suggestion")) {
        // "Is this Alice?": a is yes, x is no, s moves on.
        const button = answer && $(`[data-suggestion=${answer}]`, card);
        if (button) button.click(); else cards.move(cards.index + 1);
      } else if (card && $("[data-verdict]", card)) decide(card, verdict);
    }
  });
}

// ------------------------------------------------------------------ duplicates

function dupesPage() {
  const groups = cursor(".dupe-group:not(.done)");
  async function settle(box, verdict) {
    const contentIds = box.dataset.contents.split(",").map(Number);
    try {
      await api("POST", "/dupes/verdict", { content_ids: contentIds, verdict });
    } catch (e) { return; /* the toast says why */ }
    box.classList.add("done");
    box.dataset.verdict = verdict;
    toast(verdict === "distinct" ? "Not duplicates: never grouped again" : "All kept");
    groups.move(groups.index);
  }
  $$(".dupe-group [data-dupe]").forEach((b) =>
    b.addEventListener("click", () => settle(b.closest(".dupe-group"), b.dataset.dupe)));
  const move = $("#quarantine");
  if (move) move.addEventListener("click", async () => {
    if (!window.confirm(`Move ${move.dataset.copies} copies to quarantine? Restore puts them back.`)) return;
    move.disabled = true;
    try {
      const done = await api("POST", "/dupes/quarantine", {});
      toast(`${done.moved.length} files moved to quarantine (${done.date})`);
      window.setTimeout(() => window.location.reload(), 600);
    } catch (e) { move.disabled = false; }
  });
  $$("[data-restore]").forEach((b) => b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      const done = await api("POST", "/dupes/restore", { date: b.dataset.restore });
      toast(`${done.restored.length} files put back` + (done.left.length ? `, ${done.left.length} left` : ""));
      window.setTimeout(() => window.location.reload(), 600);
    } catch (e) { b.disabled = false; }
  }));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    if (event.key === "j") groups.move(groups.index + 1);
    else if (event.key === "k") groups.move(groups.index - 1);
    else if (event.key === "d" || event.key === "a") {
      if (groups.index < 0) groups.move(0);
      const box = groups.current();
      if (box && $("[data-dupe]", box)) settle(box, event.key === "d" ? "distinct" : "kept");
    }
  });
}

// ------------------------------------------------------------------ status

function statusPage() {
  const live = $("#live");
  if (!live || live.dataset.daemon !== "yes") return;
  let paused = live.dataset.paused === "yes";
  const show = (state, progress, nowPaused) => {
    if (state) $("#state").textContent = state;
    if (progress !== undefined) {
      $("#progress").textContent = progress ? `${progress[0]}/${progress[1]} files` : "";
      $("#bar").value = progress && progress[1] ? progress[0] / progress[1] : 0;
    }
    if (nowPaused !== undefined) paused = nowPaused;
    // The badge says "paused" when the state itself says something else.
    $("#paused").hidden = !paused || $("#state").textContent === "paused";
    if ($("#pause")) { $("#pause").hidden = paused; $("#resume").hidden = !paused; }
  };
  const log = (text) => {
    const item = document.createElement("li");
    item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $("#log").prepend(item);
    while ($("#log").children.length > 100) $("#log").lastChild.remove();
  };
  const events = new EventSource("/api/v1/events");
  events.addEventListener("hello", (e) => { const d = JSON.parse(e.data); show(d.state, d.progress, d.paused); });
  events.addEventListener("progress", (e) => { const d = JSON.parse(e.data); show(d.state, d.progress); });
  events.addEventListener("paused", (e) => { show(JSON.parse(e.data).state, undefined, true); log("paused"); });
  events.addEventListener("resumed", (e) => { show(JSON.parse(e.data).state, undefined, false); log("resumed"); });
  events.addEventListener("scan", (e) => {
    const d = JSON.parse(e.data);
    log(`scan ${d.id} (${d.trigger}): ${d.state}${d.summary.length ? ": " + d.summary[0] : ""}`);
    if (d.state === "done") show("idle", null);
  });
  events.addEventListener("errors", (e) => {
    for (const [path, why] of JSON.parse(e.data).files) log(`${path}: ${why}`);
  });
  events.addEventListener("error", (e) => { if (e.data) log(JSON.parse(e.data).message); });

  const act = async (action) => {
    try {
      if (action === "scan") { const s = await api("POST", "/scans", {}); toast(`Scan ${s.id} queued`); }
      else { const s = await api("POST", `/scans/${action}`); show(undefined, undefined, s.paused); }
    } catch (e) { /* the toast says why */ }
  };
  $$(".actions button").forEach((b) => b.addEventListener("click", () => act(b.dataset.action)));
  document.addEventListener("keydown", (event) => {
    if (event.key === " " && !event.target.closest("input, button, textarea") && $("#pause")) {
      event.preventDefault();
      act($("#pause").hidden ? "resume" : "pause");
    }
  });
}

// ------------------------------------------------------------------ search

function searchPage() {
  const results = cursor(".result");
  // One mark a result: an example, a counter-example, or none.
  function mark(card, what) {
    $$("[data-mark]", card).forEach((b) =>
      b.setAttribute("aria-pressed", String(b.dataset.mark === what && b.getAttribute("aria-pressed") !== "true")));
    const marked = (kind) => $$(`[data-mark=${kind}][aria-pressed=true]`).length;
    const count = $("#teach-count");
    if (count) count.textContent = `${marked("example")} examples, ${marked("counter")} counter-examples`;
  }
  $$("[data-mark]").forEach((b) => b.addEventListener("click", () => mark(b.closest(".result"), b.dataset.mark)));
  const form = $("#teach");
  if (form) form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ids = (kind) => $$(`[data-mark=${kind}][aria-pressed=true]`).map((b) => Number(b.closest(".result").dataset.file));
    const examples = ids("example");
    if (!examples.length) { toast("mark at least one example with +", true); return; }
    let taught;
    try {
      taught = await api("POST", "/teach", { tag: $("#teach-name").value, examples, counter: ids("counter") });
    } catch (e) { return; /* the toast says why */ }
    location.href = "/search?tag=" + encodeURIComponent(taught.tag) + "&taught=" + taught.files;
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    const keys = { j: 1, ArrowRight: 1, ArrowDown: 1, k: -1, ArrowLeft: -1, ArrowUp: -1 };
    if (keys[event.key]) { event.preventDefault(); results.move(results.index + keys[event.key]); }
    else if (event.key === "Enter" && results.current()) $("a", results.current()).click();
    else if ((event.key === "e" || event.key === "n") && results.current() && $("[data-mark]", results.current())) {
      mark(results.current(), event.key === "e" ? "example" : "counter");
    }
  });
}

// ------------------------------------------------------------------ a file

function filePage() {
  const rows = cursor(".tag-row");
  const svg = $(".photo svg");
  $$("[data-layer]").forEach((box) => box.addEventListener("change", () => {
    $(".layer." + box.dataset.layer, svg).classList.toggle("off", !box.checked);
  }));
  async function decide(row, verdict) {
    try {
      await api("POST", "/review", {
        content_id: Number(row.dataset.content), tag: row.dataset.tag, verdict,
      });
    } catch (e) { return; /* the toast says why */ }
    row.classList.remove("accept", "reject");
    row.classList.add(verdict);
    toast(verdict === "accept" ? "kept, whatever its score" : "removed from this file for good");
  }
  $$(".tag-row [data-verdict]").forEach((b) =>
    b.addEventListener("click", () => decide(b.closest(".tag-row"), b.dataset.verdict)));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    if (event.key === "j") rows.move(rows.index + 1);
    else if (event.key === "k") rows.move(rows.index - 1);
    else if (event.key === "b" && svg) svg.classList.toggle("off");
    else if ((event.key === "a" || event.key === "x") && rows.current() && $("[data-verdict]", rows.current())) {
      decide(rows.current(), event.key === "a" ? "accept" : "reject");
    }
  });
}

// ------------------------------------------------------------------ every page

document.addEventListener("DOMContentLoaded", () => {
  let go = false;
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") { $("#keys").showModal(); return; }
    if (event.key === "/") {
      event.preventDefault();
      if ($("#q")) $("#q").focus(); else location.href = "/search";
      return;
    }
    if (go) {
      const target = { o: "/", p: "/people", r: "/review", d: "/dupes", f: "/search", s: "/status" }[event.key];
      go = false;
      if (target) location.href = target;
      return;
    }
    go = event.key === "g";
  });
  const page = document.body.dataset.page;
  if (page === "people") peoplePage();
  if (page === "status") statusPage();
  if (page === "review") reviewPage();
  if (page === "dupes") dupesPage();
  if (page === "search") searchPage();
  if (page === "file") filePage();
});
