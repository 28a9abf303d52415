"""Edit an XMP packet by splicing: tagd's properties are added, changed or removed
as byte ranges of the original, and every byte outside those ranges is kept.

New elements are written in the packet's own style: its prefixes for the
namespaces it declares (a missing one is declared on the inserted element itself,
so no foreign start tag changes), its indentation, line endings and quotes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tagd.sinks.xmp.packet import (
    OPAQUE,
    PREFIXES,
    RDF,
    Attr,
    Name,
    Node,
    Packet,
    array_items,
    field_attrs,
    form,
    lead,
    text_value,
)

__all__ = [
    "El",
    "Splice",
    "SpliceError",
    "array",
    "edit_items",
    "from_flat",
    "set_array",
    "skeleton",
    "top_key",
]

V = TypeVar("V", bound=Hashable)


class SpliceError(ValueError):
    """tagd's part of the packet is written in a way tagd cannot edit safely."""


@dataclass(frozen=True)
class El:
    """An element to write: text, or children (a struct when `resource`)."""

    name: Name
    text: str = ""
    children: tuple[El, ...] = ()
    resource: bool = False


def array(name: Name, kind: str, items: Iterable[El]) -> El:
    """An array property: ``<name><rdf:kind>items</rdf:kind></name>``."""
    return El(name, children=(El((RDF, kind), children=tuple(items)),))


def li(value: str) -> El:
    return El((RDF, "li"), value)


class Splice:
    """Edits collected against one parsed packet; `result` applies them."""

    def __init__(self, packet: Packet) -> None:
        self.packet = packet
        self._edits: list[tuple[int, int, bytes]] = []
        self._new: list[El] = []
        self._chosen: dict[str, str] = {}  # URI -> prefix tagd declared for it
        self._unit = _unit(packet)
        self._quote = _quote(packet)
        self._nl = "\r\n" if b"\r\n" in packet.data else "\n"

    # -- primitives -----------------------------------------------------------------

    def remove(self, item: Node | Attr) -> None:
        """Remove an element or attribute with the white space before it."""
        self._edits.append((lead(self.packet.data, item), item.end, b""))

    def replace(self, node: Node, el: El) -> None:
        """Write `el` where `node` is, with its indentation."""
        assert node.parent is not None
        self.remove(node)
        self._insert(node.end, node.parent.scope, self._before(node), [el])

    def append(self, parent: Node, els: Sequence[El]) -> None:
        """Write `els` as the last children of `parent`, which must have an end tag."""
        if parent.empty:
            raise SpliceError(f"cannot add to the empty element {parent.qname}")
        if parent.children:
            last = parent.children[-1]
            self._insert(last.end, parent.scope, self._before(last), els)
        else:
            self._insert(parent.body, parent.scope, self._first_line(parent), els)

    def add(self, el: El) -> None:
        """A new top-level property; `result` finds it a place."""
        self._new.append(el)

    def result(self) -> bytes:
        self._place_new()
        data, out, pos = self.packet.data, [], 0
        # An insertion at a position goes before a removal that starts there (they
        # meet where a replaced element ends and the next, removed, one's white space
        # starts); the sort is stable, so insertions at one position keep their order.
        for start, end, text in sorted(self._edits, key=lambda edit: edit[:2]):
            if start < pos:
                raise SpliceError("overlapping edits")  # a bug: never write such a packet
            out += [data[pos:start], text]
            pos = end
        out.append(data[pos:])
        return b"".join(out)

    # -- placing new properties -----------------------------------------------------

    def _place_new(self) -> None:
        homeless: list[El] = []
        for el in self._new:
            home = self._home(el.name[0])
            if home is None:
                homeless.append(el)
            else:
                self.append(home, [el])
        if homeless:
            self._new_description(homeless)
        self._new = []

    def _home(self, uri: str) -> Node | None:
        """The first top-level rdf:Description with room for children, preferring one
        where the property's namespace is declared already."""
        homes = [
            top for top in self.packet.rdf.children
            if top.name == (RDF, "Description") and not top.empty
        ]  # fmt: skip
        declared = (h for h in homes if _prefix_for(h.scope, uri) is not None)
        return next(declared, homes[0] if homes else None)

    def _new_description(self, els: Sequence[El]) -> None:
        rdf = self.packet.rdf
        if rdf.empty:
            raise SpliceError("rdf:RDF is an empty element, with no room for properties")
        # XMP wants every top-level rdf:Description to describe the same resource.
        about = next(
            (a.value for top in rdf.children for a in top.attrs if a.name == (RDF, "about")), ""
        )
        if rdf.children:
            pos, before = rdf.children[-1].end, self._before(rdf.children[-1])
        else:
            pos, before = rdf.body, self._first_line(rdf)
        scope, decls = self._declare(rdf.scope, els)
        indent = _tail(before)
        q, (nl, step) = self._quote, self._layout(indent)
        tag = self._qname(scope, (RDF, "Description"))
        head = f"<{tag} {self._qname(scope, (RDF, 'about'))}={q}{_escape(about, q)}{q}"
        sep = nl + (indent or "") + step * 2 if nl else " "
        head += "".join(f"{sep}xmlns:{p}={q}{_escape(u, q)}{q}" for p, u in decls.items())
        inner = None if indent is None else indent + step
        body = "".join(nl + (inner or "") + self._render(el, scope, inner, {}) for el in els)
        text = f"{before}{head}>{body}{nl}{indent or ''}</{tag}>"
        self._edits.append((pos, pos, text.encode("utf-8")))

    # -- rendering ------------------------------------------------------------------

    def _before(self, node: Node) -> str:
        """The white space before `node`: what a new sibling after it starts with."""
        data = self.packet.data
        return data[lead(data, node) : node.start].decode("utf-8")

    def _first_line(self, parent: Node) -> str:
        """What a first child of `parent` starts with: a new line one level deeper."""
        indent = _indent(self.packet.data, parent)
        return "" if indent is None else self._nl + indent + self._unit

    def _layout(self, indent: str | None) -> tuple[str, str]:
        """(newline, indentation step); both empty where the packet is written on one line."""
        return ("", "") if indent is None else (self._nl, self._unit)

    def _insert(self, pos: int, scope: dict[str, str], before: str, els: Sequence[El]) -> None:
        indent = _tail(before)
        text = ""
        for el in els:
            inner_scope, decls = self._declare(scope, [el])
            text += before + self._render(el, inner_scope, indent, decls)
        self._edits.append((pos, pos, text.encode("utf-8")))

    def _declare(
        self, scope: dict[str, str], els: Iterable[El]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The namespaces `els` use that `scope` lacks, each with a free prefix."""
        decls: dict[str, str] = {}
        for uri in _uris(els):
            if _prefix_for(scope, uri) is None and uri not in decls.values():
                decls[self._free_prefix(uri)] = uri
        return {**scope, **decls}, decls

    def _free_prefix(self, uri: str) -> str:
        """tagd's usual prefix, unless the packet binds it to another namespace anywhere
        (readers such as exiftool do not all honour nested scopes)."""
        if uri not in self._chosen:
            base = PREFIXES.get(uri, "ns")
            taken = {p for p, uris in self.packet.bindings.items() if uris != {uri}}
            taken |= set(self._chosen.values())
            prefix, n = base, 0
            while prefix in taken:
                n += 1
                prefix = f"{base}{n}"
            self._chosen[uri] = prefix
        return self._chosen[uri]

    def _qname(self, scope: dict[str, str], name: Name) -> str:
        prefix = _prefix_for(scope, name[0])
        assert prefix is not None, name  # _declare saw to it
        return f"{prefix}:{name[1]}"

    def _render(
        self, el: El, scope: dict[str, str], indent: str | None, decls: dict[str, str]
    ) -> str:
        """One element; `indent` None writes it on one line."""
        q = self._quote
        tag = self._qname(scope, el.name)
        attrs = "".join(f" xmlns:{p}={q}{_escape(u, q)}{q}" for p, u in decls.items())
        if el.resource:
            attrs += f" {self._qname(scope, (RDF, 'parseType'))}={q}Resource{q}"
        if not el.children:
            return f"<{tag}{attrs}>{_escape(el.text)}</{tag}>"
        nl, step = self._layout(indent)
        inner = None if indent is None else indent + step
        body = "".join(
            nl + (inner or "") + self._render(child, scope, inner, {}) for child in el.children
        )
        return f"<{tag}{attrs}>{body}{nl}{indent or ''}</{tag}>"


# --- editing arrays -------------------------------------------------------------------


def set_array(splice: Splice, name: Name, kind: str, values: Sequence[str]) -> list[bytes]:
    """Make the text array `name` (a top-level property) hold `values`.

    Where every occurrence is written as an array, items are edited one by one (see
    edit_items).  A value written some other way (plain text, an attribute) is
    rewritten as one array holding the same value.  Returns the bytes of the items
    kept verbatim, in order, for verification.
    """
    packet = splice.packet
    props = [p.item for p in packet.props(name)]
    arrays = [p for p in props if isinstance(p, Node) and form(p) == "array"]
    if props and len(arrays) == len(props):
        found = [(p, [(text_value(packet, i), i) for i in array_items(p)]) for p in arrays]
        return edit_items(splice, found, values, li)
    if any(v.startswith(OPAQUE) for v in values):
        raise SpliceError(f"{props[0].qname} holds a structure where tagd expects text")
    elements = [p for p in props if isinstance(p, Node)]
    first = elements[0] if elements else None
    for item in props:
        if item is not first:
            splice.remove(item)
    new = array(name, kind, map(li, values))
    if first is not None:
        if values:
            splice.replace(first, new)
        else:
            splice.remove(first)
    elif values:
        splice.add(new)
    return []


def edit_items(
    splice: Splice,
    found: Sequence[tuple[Node, Sequence[tuple[V, Node]]]],
    values: Sequence[V],
    render: Callable[[V], El],
) -> list[bytes]:
    """Edit array items in place: `found` holds each array property with its
    (value, rdf:li) items.  Items matching `values` in order keep their bytes, the
    others go, and the rest of `values` is appended to the last property.  A property
    left with no item is removed.  Returns the bytes of the kept items."""
    packet = splice.packet
    remaining = list(values)
    kept: list[bytes] = []
    drops: list[list[Node]] = []
    for _, items in found:
        drops.append([])
        for value, item in items:
            if remaining and value == remaining[0]:
                kept.append(packet.raw(item))
                remaining.pop(0)
            else:
                drops[-1].append(item)
    for i, (prop, items) in enumerate(found):
        append = remaining if i == len(found) - 1 else []
        if len(drops[i]) == len(items) and not append:
            splice.remove(prop)
            continue
        for item in drops[i]:
            splice.remove(item)
        if append:
            _append_items(splice, prop, [render(v) for v in append])
    return kept


def _append_items(splice: Splice, prop: Node, items: Sequence[El]) -> None:
    container = prop.children[0]
    if container.empty:
        # ``<rdf:Bag/>`` holds no item, so writing the property anew loses nothing.
        splice.replace(prop, array(prop.name, container.name[1], items))
    else:
        splice.append(container, items)


# --- structures from flattened values -------------------------------------------------


def from_flat(name: Name, entries: Sequence[tuple[str, str]], known: dict[str, str]) -> El:
    """An element from flattened (path, value) pairs relative to it, as
    packet.flatten reads them; `known` maps the prefixes in paths to URIs."""
    own = dict(entries).get("")
    if own is not None and own.startswith(OPAQUE):
        raise SpliceError(f"{name[1]} holds XML tagd cannot rewrite")
    if own == "type=Struct":
        groups = _group(entries, "/")
        children = (from_flat(_name(key, known), sub, known) for key, sub in groups.items())
        return El(name, children=tuple(children), resource=True)
    if own in ("type=Bag", "type=Seq", "type=Alt"):
        groups = _group(entries, "[")
        items = (from_flat((RDF, "li"), groups[key], known) for key in sorted(groups, key=int))
        return array(name, own.removeprefix("type="), items)
    if any(path for path, _ in entries):
        raise SpliceError(f"{name[1]} has qualifiers tagd cannot rewrite")
    return El(name, own or "")


def _group(entries: Sequence[tuple[str, str]], sep: str) -> dict[str, list[tuple[str, str]]]:
    """Members of a container by first path component, in order of appearance:
    "/a:b/c:d" -> {"a:b": [("/c:d", ...)]}; items: "[2]/x" -> {"2": [("/x", ...)]}."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for path, value in entries:
        if not path:
            continue
        if not path.startswith(sep):
            raise SpliceError(f"unexpected key {path!r}")
        rest = path[1:]
        cut = rest.index("]") + 1 if sep == "[" else _component_end(rest)
        key = rest[: cut - 1] if sep == "[" else rest[:cut]
        groups.setdefault(key, []).append((rest[cut:], value))
    return groups


def top_key(path: str) -> str:
    """The first component of a flattened path: "/a:b/c:d" -> "/a:b"."""
    return path[: 1 + _component_end(path[1:])]


def _component_end(rest: str) -> int:
    # "prefix:name" or "{uri}name"; a URI may hold '/' and '['.
    start = rest.index("}") if rest.startswith("{") else 0
    ends = [i for i in (rest.find("/", start), rest.find("[", start)) if i >= 0]
    return min(ends, default=len(rest))


def _name(component: str, known: dict[str, str]) -> Name:
    if component.startswith("{"):
        uri, _, local = component[1:].partition("}")
        return uri, local
    prefix, _, local = component.partition(":")
    if prefix not in known:
        raise SpliceError(f"unknown namespace prefix in {component!r}")
    return known[prefix], local


# --- verification ---------------------------------------------------------------------


def skeleton(packet: Packet, names: Collection[Name]) -> bytes:
    """The packet without the top-level properties named `names` (each with the white
    space before it) and without top-level nodes that hold nothing else.  Packets that
    differ only in those properties have the same skeleton."""
    cuts: list[tuple[int, int]] = []
    data = packet.data
    for top in packet.rdf.children:
        props = [*field_attrs(top), *top.children]
        plain = all(a.name == (RDF, "about") or a in props for a in top.attrs)
        if plain and all(p.name in names for p in props):
            cuts.append((lead(data, top), top.end))
        else:
            cuts.extend((lead(data, p), p.end) for p in props if p.name in names)
    out, pos = [], 0
    for start, end in sorted(cuts):
        out.append(data[pos:start])
        pos = end
    out.append(data[pos:])
    return b"".join(out)


# --- style ----------------------------------------------------------------------------


def _uris(els: Iterable[El]) -> list[str]:
    out: list[str] = []
    for el in els:
        for uri in (el.name[0], *([RDF] if el.resource else []), *_uris(el.children)):
            if uri not in out:
                out.append(uri)
    return out


def _prefix_for(scope: dict[str, str], uri: str) -> str | None:
    # The default namespace ("") cannot qualify attributes, so it is never used.
    found = [p for p, u in scope.items() if u == uri and p]
    return found[-1] if found else None


def _indent(data: bytes, node: Node) -> str | None:
    """The indentation of `node`'s line, or None when something precedes it there."""
    start = lead(data, node)
    before = data[start : node.start].decode("utf-8")
    if start == 0 and "\n" not in before:
        return before
    return _tail(before)


def _tail(before: str) -> str | None:
    """The indentation at the end of white space `before`; None without a newline."""
    return before.rsplit("\n", 1)[1] if "\n" in before else None


def _unit(packet: Packet) -> str:
    """One level of indentation: how much deeper the first indented child sits."""
    for node in packet.nodes:
        if node.parent is None or node is not node.parent.children[0]:
            continue
        inner, outer = _indent(packet.data, node), _indent(packet.data, node.parent)
        if inner is not None and outer is not None and inner.startswith(outer) and inner != outer:
            return inner[len(outer) :]
    return " "


def _quote(packet: Packet) -> str:
    tag = packet.data[packet.rdf.start : packet.rdf.body]
    single, double = tag.find(b"'"), tag.find(b'"')
    return "'" if single >= 0 and (double < 0 or single < double) else '"'


def _escape(text: str, quote: str | None = None) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # A bare CR would read back as LF.
    text = text.replace("\r", "&#13;")
    if quote is not None:
        text = text.replace(quote, "&apos;" if quote == "'" else "&quot;")
    return text
