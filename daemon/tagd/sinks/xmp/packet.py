"""Byte-exact reading of XMP packets.

Exiv2 (and so pyexiv2) re-serialises a whole packet when it writes one: values
other tools wrote come back in Exiv2's spelling (Lightroom's GPS coordinates, an
old ``exif:ExifVersion``, empty lang-alt items, prefixes), so a sidecar edited
that way no longer holds what its owner wrote.  tagd never re-serialises.  This
module parses a packet with expat and keeps the byte range of every element and
attribute; :mod:`tagd.sinks.xmp.splice` then replaces only the ranges of tagd's
own properties, and every other byte stays as written.

Names are matched by namespace URI, never by prefix: ``dcx:subject`` is
``dc:subject`` when ``dcx`` is bound to the Dublin Core URI.  Property values
are read the way RDF defines them: a property may sit in any top-level
``rdf:Description``, in element or attribute form, and a structure may be
written with ``rdf:parseType="Resource"``, a nested ``rdf:Description`` or
field attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

__all__ = [
    "MWG_RS",
    "OPAQUE",
    "PREFIXES",
    "RDF",
    "TAGD",
    "Attr",
    "Name",
    "Node",
    "Packet",
    "PacketError",
    "Prop",
    "array_items",
    "canonical",
    "field_attrs",
    "fields",
    "flatten",
    "form",
    "lead",
    "parse",
    "text_value",
    "texts",
]

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML = "http://www.w3.org/XML/1998/namespace"
TAGD = "http://ns.tagd.local/1.0/"
MWG_RS = "http://www.metadataworkinggroup.com/schemas/regions/"

# (namespace URI, local name)
Name = tuple[str, str]

ARRAYS = frozenset({(RDF, "Bag"), (RDF, "Seq"), (RDF, "Alt")})

# Prefixes tagd uses in its own keys and for namespaces it has to declare.
PREFIXES = {
    RDF: "rdf",
    XML: "xml",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://www.digikam.org/ns/1.0/": "digiKam",
    TAGD: "tagd",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
    MWG_RS: "mwg-rs",
    "http://ns.adobe.com/xmp/sType/Area#": "stArea",
    "http://ns.adobe.com/xap/1.0/sType/Dimensions#": "stDim",
    "http://ns.adobe.com/xap/1.0/": "xmp",
}

# A value tagd cannot read as text (a structure where a keyword belongs) is carried
# as this prefix plus its XML.  NUL never occurs in XML text, so such a value never
# equals a keyword, and it can never be written back as text by mistake.
OPAQUE = "\x00"

# The rest of a start tag after '<': quoted values may hold '>'.
_TAG_REST = re.compile(rb"""[^'">]*(?:(?:"[^"]*"|'[^']*')[^'">]*)*>""")
_ATTR = re.compile(rb"""([^\s=/>]+)\s*=\s*("[^"]*"|'[^']*')""")
_SPACE = b" \t\r\n"
# Real packets nest a dozen levels; the readers here recurse, so a file nested
# deeper is refused rather than allowed to exhaust the stack.
_MAX_DEPTH = 200


class PacketError(ValueError):
    """The bytes are not a well-formed XMP packet; the message says why."""


@dataclass(eq=False)
class Attr:
    """An attribute: `start`..`end` is ``name="value"``, `lead` where the white
    space before it starts."""

    name: Name
    qname: str
    value: str
    lead: int
    start: int
    end: int


@dataclass(eq=False)
class Node:
    """An element: `start`..`body` is the start tag, `close`..`end` the end tag
    (all four equal `body`/`end` for an empty element written ``<x/>``)."""

    name: Name
    qname: str
    start: int
    body: int
    close: int
    end: int
    attrs: list[Attr]
    scope: dict[str, str]  # prefix -> URI in effect inside the element
    parent: Node | None
    children: list[Node] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.body == self.end

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def attr(self, name: Name) -> str | None:
        return next((a.value for a in self.attrs if a.name == name), None)


@dataclass(frozen=True, eq=False)
class Prop:
    """A top-level property: an element or attribute of a top-level node of rdf:RDF."""

    owner: Node
    item: Node | Attr

    @property
    def name(self) -> Name:
        return self.item.name


@dataclass(eq=False)
class Packet:
    data: bytes
    rdf: Node
    nodes: list[Node]  # every element, in document order
    bindings: dict[str, set[str]]  # every prefix declared anywhere -> its URIs

    def props(self, name: Name | None = None) -> Iterator[Prop]:
        """Top-level properties (all of them, or those named `name`) in document order."""
        for top in self.rdf.children:
            for item in (*field_attrs(top), *top.children):
                if name is None or item.name == name:
                    yield Prop(top, item)

    def raw(self, item: Node | Attr) -> bytes:
        return self.data[item.start : item.end]


# --- parsing --------------------------------------------------------------------------


def parse(data: bytes) -> Packet:
    """Parse an XMP packet; PacketError unless it is well-formed UTF-8 XML with rdf:RDF."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PacketError(f"not UTF-8 text (invalid byte at offset {exc.start})") from exc
    builder = _Builder(data)
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=" ")
    builder.attach(parser)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code)
        raise PacketError(
            f"not well-formed XML ({reason} at line {exc.lineno}, column {exc.offset})"
        ) from exc
    rdf = next((n for n in builder.nodes if n.name == (RDF, "RDF")), None)
    if rdf is None:
        raise PacketError("not an XMP packet (no rdf:RDF element)")
    return Packet(data, rdf, builder.nodes, builder.bindings)


class _Builder:
    """expat handlers that build the Node tree with byte offsets."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.nodes: list[Node] = []
        self.bindings: dict[str, set[str]] = {}
        self._stack: list[Node] = []
        self._decls: dict[str, str] = {}
        self._parser: expat.XMLParserType | None = None

    def attach(self, parser: expat.XMLParserType) -> None:
        self._parser = parser
        parser.namespace_prefixes = True
        parser.ordered_attributes = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        parser.StartNamespaceDeclHandler = self._declare
        parser.StartDoctypeDeclHandler = self._doctype

    def _doctype(self, *_: object) -> None:
        # XMP forbids DTDs; entities declared in one could expand without bound.
        raise PacketError("has a DOCTYPE, which XMP does not allow")

    def _declare(self, prefix: str | None, uri: str | None) -> None:
        self._decls[prefix or ""] = uri or ""
        self.bindings.setdefault(prefix or "", set()).add(uri or "")

    def _start(self, name: str, attributes: list[str]) -> None:
        assert self._parser is not None
        if len(self._stack) >= _MAX_DEPTH:
            raise PacketError(f"elements nested deeper than {_MAX_DEPTH} levels")
        start = self._parser.CurrentByteIndex
        match = _TAG_REST.match(self.data, start + 1)
        assert match is not None  # expat accepted the tag
        body = match.end()
        uri, local, qname = _split(name)
        parent = self._stack[-1] if self._stack else None
        scope = {**(parent.scope if parent else {}), **self._decls}
        self._decls = {}
        empty = self.data[body - 2 : body] == b"/>"
        tag_end = body - (2 if empty else 1)
        attrs = _attrs(self.data, start + 1 + len(qname.encode()), tag_end, attributes)
        node = Node((uri, local), qname, start, body, body, body, attrs, scope, parent)
        if parent is not None:
            parent.children.append(node)
        self.nodes.append(node)
        self._stack.append(node)

    def _end(self, _name: str) -> None:
        assert self._parser is not None
        node = self._stack.pop()
        if self.data[node.body - 2 : node.body] == b"/>":
            return  # ``<x/>``: close and end stay at the end of the start tag
        node.close = self._parser.CurrentByteIndex
        node.end = self.data.index(b">", node.close) + 1

    def _chars(self, text: str) -> None:
        if self._stack:
            self._stack[-1].chunks.append(text)


def _split(name: str) -> tuple[str, str, str]:
    """expat's "uri local prefix" -> (uri, local, qualified name as written)."""
    parts = name.split(" ")
    if len(parts) == 3:
        return parts[0], parts[1], f"{parts[2]}:{parts[1]}"
    if len(parts) == 2:
        return parts[0], parts[1], parts[1]
    return "", name, name


def _attrs(data: bytes, begin: int, end: int, decoded: list[str]) -> list[Attr]:
    """Attributes with their byte ranges; `decoded` is expat's [name, value, ...] list,
    which omits namespace declarations but keeps document order."""
    raw = [m for m in _ATTR.finditer(data, begin, end) if not _is_decl(m.group(1))]
    if len(raw) * 2 != len(decoded):
        raise PacketError("has a start tag tagd cannot take apart")
    out = []
    for i, match in enumerate(raw):
        uri, local, qname = _split(decoded[2 * i])
        lead = match.start()
        while data[lead - 1] in _SPACE:
            lead -= 1
        out.append(Attr((uri, local), qname, decoded[2 * i + 1], lead, match.start(), match.end()))
    return out


def _is_decl(name: bytes) -> bool:
    return name == b"xmlns" or name.startswith(b"xmlns:")


def lead(data: bytes, item: Node | Attr) -> int:
    """Where the white space before `item` starts (removing an item removes it too)."""
    pos = item.lead if isinstance(item, Attr) else item.start
    while pos > 0 and data[pos - 1] in _SPACE:
        pos -= 1
    return pos


# --- reading values -------------------------------------------------------------------


def canonical(name: Name) -> str:
    """A name with tagd's prefix for known namespaces (``mwg-rs:Area``), else ``{uri}local``."""
    prefix = PREFIXES.get(name[0])
    return f"{prefix}:{name[1]}" if prefix else f"{{{name[0]}}}{name[1]}"


def field_attrs(node: Node) -> list[Attr]:
    """Attributes that are properties or structure fields (``rdf:value`` counts: it
    is the value of a qualified property)."""
    return [
        a for a in node.attrs
        if a.name[0] not in ("", XML) and (a.name[0] != RDF or a.name[1] == "value")
    ]  # fmt: skip


def form(node: Node) -> str:
    """How an element holds its value: "text", "array", "struct" or "other"."""
    parse_type = node.attr((RDF, "parseType"))
    if parse_type is not None:
        return "struct" if parse_type == "Resource" else "other"
    if node.children:
        if len(node.children) > 1 or node.text.strip():
            return "other"
        return "array" if node.children[0].name in ARRAYS else "struct"
    if field_attrs(node):
        return "struct"  # an empty element whose attributes are the fields
    return "text"


def fields(node: Node) -> list[Node | Attr]:
    """The fields of a structure (form "struct"), in document order."""
    if node.attr((RDF, "parseType")) == "Resource":
        return [*node.children]
    if node.children:
        inner = node.children[0]  # a nested rdf:Description (or typed node)
        return [*field_attrs(inner), *inner.children]
    return [*field_attrs(node)]


def array_items(node: Node) -> list[Node]:
    """The rdf:li items of an element of form "array"."""
    return [li for li in node.children[0].children if li.name == (RDF, "li")]


def _value_field(node: Node) -> Node | Attr | None:
    """The rdf:value of a qualified value (a structure whose main value is rdf:value)."""
    return next((f for f in fields(node) if f.name == (RDF, "value")), None)


def text_value(packet: Packet, node: Node | Attr) -> str:
    """A text value (of a property, field or rdf:li), or OPAQUE + its XML when the
    value is not text."""
    if isinstance(node, Attr):
        return node.value
    kind = form(node)
    if kind == "text":
        resource = node.attr((RDF, "resource"))
        return node.text if resource is None else resource
    if kind == "struct":
        value = _value_field(node)
        if value is not None:
            return text_value(packet, value)
    return OPAQUE + packet.raw(node).decode("utf-8")


def texts(packet: Packet, name: Name) -> list[tuple[str, Node | None]]:
    """The values of a text array, all occurrences in document order, each with its
    rdf:li (None when the property is not written as an array)."""
    out: list[tuple[str, Node | None]] = []
    for prop in packet.props(name):
        item = prop.item
        if isinstance(item, Node) and form(item) == "array":
            out.extend((text_value(packet, li), li) for li in array_items(item))
            continue
        value = text_value(packet, item)
        # A lone keyword written as plain text by a sloppy tool is still a keyword;
        # white space alone is nothing.
        if value.strip():
            out.append((value, None))
    return out


def flatten(packet: Packet, item: Node | Attr, path: str = "") -> list[tuple[str, str]]:
    """A value as (path, text) pairs in the style of Exiv2 keys: containers read
    ``type=Struct`` / ``type=Bag``..., fields ``path/prefix:name``, items
    ``path[i]``, qualifiers ``path/?prefix:name``."""
    if isinstance(item, Attr):
        return [(path, item.value)]
    kind = form(item)
    if kind == "array":
        out = [(path, f"type={item.children[0].name[1]}")]
        for i, li in enumerate(array_items(item), 1):
            out.extend(flatten(packet, li, f"{path}[{i}]"))
        return out
    if kind == "struct":
        value = _value_field(item)
        members = fields(item)
        if value is not None:
            out = flatten(packet, value, path)
            qualifiers = (f for f in members if f is not value)
            return out + [kv for f in qualifiers for kv in _qualifier(packet, f, path)]
        out = [(path, "type=Struct")]
        for member in members:
            out.extend(flatten(packet, member, f"{path}/{canonical(member.name)}"))
        return out
    if kind == "text":
        out = [(path, text_value(packet, item))]
        lang = item.attr((XML, "lang"))
        return out if lang is None else [*out, (f"{path}/?xml:lang", lang)]
    return [(path, OPAQUE + packet.raw(item).decode("utf-8"))]


def _qualifier(packet: Packet, item: Node | Attr, path: str) -> list[tuple[str, str]]:
    return flatten(packet, item, f"{path}/?{canonical(item.name)}")
