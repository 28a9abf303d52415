"""What users do to people: name, merge, split, say a face is not someone, hide
strangers. Each re-derives the person tags of the files involved and queues
their sidecars, in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.people import store
from tagd.people.cluster import cluster_faces, rederive
from tagd.records import Person


class PeopleError(ValueError):
    """A request that cannot be done as asked (unknown person, name taken...)."""


class NoSuchPerson(PeopleError):
    """No person has that id or name."""


def _find(catalog: Catalog, key: str) -> Person:
    found = store.person(catalog, key)
    if found is None:
        raise NoSuchPerson(f"no person {key!r}: see `tagd people list`")
    return found


def name(catalog: Catalog, settings: Settings, key: str, new_name: str) -> Person:
    new_name = new_name.strip()
    # Digits alone would read as a person id in every other command.
    if not new_name or "|" in new_name or "/" in new_name or new_name.isdigit():
        raise PeopleError(f"{new_name!r}: a name needs a letter, and no '|' or '/'")
    target = _find(catalog, key)
    other = store.person(catalog, new_name)
    if other is not None and other.id != target.id:
        raise PeopleError(
            f"{new_name!r} is already person {other.id}; "
            f"to join them: tagd people merge {target.id} {other.id}"
        )
    with catalog.transaction():
        catalog.rename_person(target.id, new_name)
        rederive(catalog, settings, catalog.contents_of_people([target.id]))
    return _find(catalog, str(target.id))


def merge(catalog: Catalog, settings: Settings, keep_key: str, other_key: str) -> Person:
    """Move every face of `other` into `keep`; `other` is deleted. When only `other`
    has a name, the merged person takes it."""
    keep, other = _find(catalog, keep_key), _find(catalog, other_key)
    if keep.id == other.id:
        raise PeopleError("cannot merge a person with itself")
    if keep.name and other.name:
        raise PeopleError(
            f"both are named ({keep.name!r}, {other.name!r}): rename or choose which to keep "
            "by naming only one"
        )
    with catalog.transaction():
        affected = catalog.contents_of_people([keep.id, other.id])
        catalog.move_faces(other.id, keep.id)
        catalog.delete_person(other.id)
        if other.name and not keep.name:
            catalog.rename_person(keep.id, other.name)
        rederive(catalog, settings, affected)
    return _find(catalog, str(keep.id))


def split_faces(
    catalog: Catalog, settings: Settings, key: str, detection_ids: Sequence[int]
) -> Person:
    """Move the given faces of a person into a new, unnamed person (a user's choice:
    clustering never moves them back)."""
    source = _find(catalog, key)
    theirs = {f.detection_id for f in catalog.faces_of(source.id)}
    strangers = sorted(set(detection_ids) - theirs)
    if strangers:
        raise PeopleError(f"faces {strangers} are not faces of {source.label}")
    if not detection_ids:
        raise PeopleError("give the faces to move (detection ids, see `tagd people sheet`)")
    with catalog.transaction():
        target = catalog.new_person()
        store.assign(catalog, detection_ids, target, by_user=True)
        rederive(catalog, settings, catalog.contents_of_people([source.id, target]))
    return _find(catalog, str(target))


def recluster(catalog: Catalog, settings: Settings, key: str) -> list[Person]:
    """Forget one unnamed person's clustering and cluster its faces again among
    themselves (e.g. after lowering faces.max_distance). Faces a user placed stay."""
    source = _find(catalog, key)
    if source.name:
        raise PeopleError(f"{source.label} is named: split faces out of it instead")
    faces = [f.detection_id for f in catalog.faces_of(source.id)]
    with catalog.transaction():
        catalog.forget_faces_of(source.id)
        catalog.delete_person(source.id)
        catalog.add_waiting_faces(faces)
        made = cluster_faces(catalog, settings, faces, restrict=set(faces))
        rederive(catalog, settings, catalog.contents_of_people(made))
    return [p for p in catalog.people() if p.id in made]


def refuse_face(catalog: Catalog, settings: Settings, key: str, detection_id: int) -> Person:
    """ "Not this person": the face leaves it, and clustering never puts it back."""
    with catalog.transaction():
        source = _find(catalog, key)
        if detection_id not in {f.detection_id for f in catalog.faces_of(source.id)}:
            raise PeopleError(f"face {detection_id} is not a face of {source.label}")
        catalog.refuse_face(detection_id, source.id)
        content = catalog.face_info([detection_id])[detection_id][0]
        rederive(catalog, settings, [content])
        return _find(catalog, str(source.id))


def refuse_cluster(catalog: Catalog, key: str, other_key: str) -> Person:
    """ "These are not this person": every face of `other` (an unnamed cluster) is
    refused for `key`, so it is never suggested or clustered into it; the faces
    stay in their cluster."""
    with catalog.transaction():
        person, other = _find(catalog, key), _find(catalog, other_key)
        if person.id == other.id:
            raise PeopleError("a person cannot be refused for itself")
        if other.name:
            raise PeopleError(f"{other.label} is named: rename or merge instead")
        catalog.refuse_for(catalog.face_ids_by_person([other.id]).get(other.id, []), person.id)
        return person


def confirm_face(catalog: Catalog, settings: Settings, key: str, detection_id: int) -> Person:
    """ "Yes, this person": the face stays where it is as a user's decision."""
    with catalog.transaction():
        source = _find(catalog, key)
        if detection_id not in {f.detection_id for f in catalog.faces_of(source.id)}:
            raise PeopleError(f"face {detection_id} is not a face of {source.label}")
        store.assign(catalog, [detection_id], source.id, by_user=True)
        return source


def hide(catalog: Catalog, key: str, hidden: bool) -> Person:
    """Hide an unnamed cluster (strangers in the background) or show it again. It
    stays a cluster, so more faces of theirs join it rather than a new one."""
    with catalog.transaction():
        source = _find(catalog, key)
        if hidden and source.name:
            raise PeopleError(
                f"{source.label} has a name: only unnamed clusters are hidden as strangers"
            )
        catalog.set_hidden(source.id, hidden)
        return _find(catalog, str(source.id))
