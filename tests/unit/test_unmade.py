"""Families `tagd models fetch` could not make: their analyzers stay off with the
reason, the others are built; a model fetch never tried to make is still required."""

from __future__ import annotations

from pathlib import Path

from tagd.config import Settings
from tagd.pipeline import analyzer_shas, usable_analyzers
from tagd.runtime import unmade

WHY = "efficientnet needs torch to export: pip install 'tagd[export]'"


def test_an_unmade_family_turns_its_analyzer_off_with_the_reason(tmp_path: Path) -> None:
    settings = Settings()
    everything, off = usable_analyzers(settings, tmp_path)
    assert off == {} and "concepts" in [a.name for a in everything]

    unmade.record(tmp_path, "efficientnet", WHY)
    analyzers, off = usable_analyzers(settings, tmp_path)
    assert off == {"concepts": f"off until its model is made: {WHY}"}
    assert [a.name for a in analyzers] == [a.name for a in everything if a.name != "concepts"]
    assert "concepts" not in analyzer_shas(settings, tmp_path)

    # Made since (its file is there): on again, whatever the record says.
    [concepts] = [a for a in everything if a.name == "concepts"]
    for model in concepts.models:
        (tmp_path / model.spec.file).write_bytes(b"")
    assert "concepts" in [a.name for a in usable_analyzers(settings, tmp_path)[0]]


def test_fetch_clears_what_it_makes_and_a_bad_record_counts_as_none(tmp_path: Path) -> None:
    unmade.record(tmp_path, "efficientnet", WHY)
    unmade.record(tmp_path, "dlib-face", "no weights in --source")
    assert unmade.unmade(tmp_path) == {"efficientnet": WHY, "dlib-face": "no weights in --source"}
    unmade.clear(tmp_path, "dlib-face")
    assert unmade.unmade(tmp_path) == {"efficientnet": WHY}
    unmade.clear(tmp_path, "efficientnet")
    assert not (tmp_path / unmade.FILE).exists()

    (tmp_path / unmade.FILE).write_text("families = [", encoding="utf-8")
    assert unmade.unmade(tmp_path) == {}
    assert usable_analyzers(Settings(), tmp_path)[1] == {}
