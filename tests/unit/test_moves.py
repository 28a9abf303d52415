"""The journalled mover on real files: a line a crash cut short does not swallow
the next move's record, and only unsealed journals are looked at again."""

from __future__ import annotations

from pathlib import Path

from tagd.moves import Journal, Move, Report


def test_a_cut_line_loses_no_later_move(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.path.write_text('{"from": "/x", "to')  # a crash mid-write
    source = tmp_path / "a.jpg"
    source.write_bytes(b"photo")
    report = Report()
    journal.run([Move(str(source), str(tmp_path / "moved" / "a.jpg"))], report)
    assert [m.target for m in journal.entries()] == [str(tmp_path / "moved" / "a.jpg")]
    assert not journal.sealed  # the run is not over until its caller seals it
    back = Report()
    assert journal.undo(back) and source.read_bytes() == b"photo"


def test_a_sealed_journal_has_nothing_to_finish(tmp_path: Path) -> None:
    source, target = tmp_path / "a.jpg", tmp_path / "b" / "a.jpg"
    source.write_bytes(b"photo")
    journal = Journal(tmp_path / "j.jsonl")
    journal.run([Move(str(source), str(target))], Report())
    journal.seal()
    assert journal.sealed and journal.finish() == []
    # A half-made move (link, no unlink) in an unsealed journal is finished.
    other = tmp_path / "c.jpg"
    other.write_bytes(b"two")
    half = Journal(tmp_path / "k.jsonl")
    half.path.write_text(f'{{"from": "{other}", "to": "{tmp_path / "c2.jpg"}"}}\n')
    (tmp_path / "c2.jpg").hardlink_to(other)
    assert [m.source for m in half.finish()] == [str(other)]
    assert not other.exists() and (tmp_path / "c2.jpg").read_bytes() == b"two"
