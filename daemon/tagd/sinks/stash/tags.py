"""Find or create the Stash tags tagd writes, once per delivery run.

Naming rule (what users see in Stash): tagd's tag "AI|Objects|dog" becomes the
Stash tag "dog", a child of the parent tag (`[stash] parent_tag`, "AI"), with
`ignore_auto_tag` set so Stash's auto-tagger does not match it against file
names. Stash tag names and aliases are unique (case-insensitively), so "dog"
may already exist:

- it is a child of the parent tag: it is ours (or the user filed it there),
  reuse it;
- "dog" is an *alias* of a tag: the user said that name means that tag, reuse
  it (it is not re-parented);
- a tag of the user's named "dog" elsewhere: leave it alone and use
  "dog (AI)" (then "dog (AI 2)", ...), so tagd's additions and removals never
  mix with a tag whose meaning is the user's.

Tags that an existing scene already carries are never recorded as tagd's (see
deliver.py), so reusing a user's aliased tag never makes tagd remove it later.
"""

from __future__ import annotations

from typing import Any

from tagd.sinks.stash.client import StashClient, StashError, StashGraphQLError

FIND_TAGS = """
query FindTags($name: String!) {
  findTags(
    tag_filter: {name: {value: $name, modifier: EQUALS},
                 OR: {aliases: {value: $name, modifier: EQUALS}}}
    filter: {per_page: 50}
  ) { tags { id name aliases parents { id } } }
}
"""

CREATE_TAG = """
mutation CreateTag($input: TagCreateInput!) {
  tagCreate(input: $input) { id name }
}
"""

MAX_SUFFIX = 5


class TagResolver:
    def __init__(self, client: StashClient, parent_name: str) -> None:
        self.client = client
        self.parent_name = parent_name
        self._parent: str | None = None
        self._ids: dict[str, str] = {}  # leaf (lower) -> Stash tag id, for this run

    def parent(self) -> str:
        """The parent tag's id; an existing tag of that name (or alias) is reused."""
        if self._parent is None:
            self._parent = self._exact_or_create(self.parent_name, "[stash] parent_tag")
        return self._parent

    def plain(self, name: str) -> str:
        """A tag by exact name, created (top level) when missing: workflow tags."""
        key = "\0" + name.lower()
        if key not in self._ids:
            self._ids[key] = self._exact_or_create(name, "the workflow tag")
        return self._ids[key]

    def child(self, leaf: str) -> str:
        """The Stash tag id for one of tagd's tags (its last '|' level)."""
        key = leaf.lower()
        if key in self._ids:
            return self._ids[key]
        parent = self.parent()
        for candidate in _candidates(leaf, self.parent_name):
            found, near = self._lookup(candidate)
            if not found:
                if near:
                    continue  # Stash's name check would refuse it: the next name
                created = self._try_create(candidate, parents=[parent])
                if created is None:
                    continue  # refused all the same (a tag made meanwhile)
                self._ids[key] = created
                return created
            for tag in found:
                named = tag["name"].lower() == candidate.lower()
                ours = parent in {p["id"] for p in tag["parents"]}
                if (named and ours) or not named:  # ours, or `candidate` is an alias
                    self._ids[key] = tag["id"]
                    return tag["id"]
            # The name is a user's tag outside the parent: try the next name.
        raise StashError(f"no free Stash tag name for {leaf!r} (tried {MAX_SUFFIX + 1})")

    def _exact_or_create(self, name: str, what: str) -> str:
        """The tag named (or aliased) exactly `name`, created when Stash has none."""
        found, near = self._lookup(name)
        if found:
            return str(found[0]["id"])
        created = None if near else self._try_create(name, parents=[])
        if created is None:
            others = ", ".join(repr(t["name"]) for t in near) or "a tag made meanwhile"
            raise StashError(
                f"Stash refuses to create {what} {name!r}: its name check matches {others} "
                "(Stash compares tag names with SQL LIKE, where '_' and '%' stand for any "
                "characters); rename that tag in Stash"
            )
        return created

    def _lookup(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(tags named or aliased exactly `name`, tags Stash's LIKE also matched).

        Stash's EQUALS is SQL LIKE ('_' and '%' are wildcards, ASCII case folding),
        and its uniqueness check on create uses the same comparison: a near match
        alone means Stash refuses to create `name`."""
        tags = self.client.call(FIND_TAGS, {"name": name})["findTags"]["tags"]
        low = name.lower()
        exact = [t for t in tags if t["name"].lower() == low]
        aliased = [t for t in tags if low in (a.lower() for a in t["aliases"])]
        found = exact + [t for t in aliased if t not in exact]
        return found, [t for t in tags if t not in found]

    def _try_create(self, name: str, parents: list[str]) -> str | None:
        """The new tag's id; None when Stash refuses the name as taken."""
        payload = {"name": name, "ignore_auto_tag": True, "parent_ids": parents}
        try:
            return str(self.client.call(CREATE_TAG, {"input": payload})["tagCreate"]["id"])
        except StashGraphQLError as exc:
            if any(_taken(m) for m in exc.messages):
                return None
            raise


def _taken(message: str) -> bool:
    """Whether Stash refused a new name as used (pkg/tag/update.go's errors)."""
    return "already exists" in message or "is used as alias" in message


def _candidates(leaf: str, parent: str) -> list[str]:
    names = [leaf, f"{leaf} ({parent})"]
    names += [f"{leaf} ({parent} {n})" for n in range(2, MAX_SUFFIX + 1)]
    return names
