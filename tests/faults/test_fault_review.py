"""Faults while a review is saved: crash (kill -9) at every step of a save, full disk, a torn audit line, a
second process labelling the same folder, and the directory sync that makes a rename durable."""
import errno
import json
import os
import signal
import stat
import time

import pytest

from leukviewer.core.review.session import ReviewError, ReviewSession

MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}


def labels(folder):
    data = json.loads((folder / ".leukviewer" / "review.json").read_text(encoding="utf-8"))
    return {k: v["label"] for k, v in data["reviews"].items()}


# ---------------------------------------------------------------------------------------------- kill -9

KILL_POINTS = [
    "fsync:1",   # before the audit line is synced
    "write:1",   # half-way through writing the new review.json (temporary file)
    "fsync:2",   # the temporary file written, not yet synced
    "replace:1",  # synced, not yet renamed over review.json
    "fsync:3",   # renamed, the directory not yet synced
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_during_a_save_leaves_the_old_or_the_new_review(tmp_path, review_child, point):
    """A process killed at any step of saving its 3rd label: review.json is valid JSON holding the first two labels
    and either without or with the third; the folder reopens; the audit log reads."""
    proc = review_child(tmp_path, "c", 3, kill_point=point)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (point, out, err)
    assert "saved c#1" in out and "saved c#2" not in out
    got = labels(tmp_path)                                  # valid JSON, or this raises
    assert got in ({"c#0": "HEM", "c#1": "ALL"}, {"c#0": "HEM", "c#1": "ALL", "c#2": "HEM"}), (point, got)
    session = ReviewSession.open(tmp_path, MODEL)
    assert session.reviewed_label("c#0") == "HEM" and session.reviewed_label("c#1") == "ALL"
    entries = session.audit_entries()
    assert [e["cell_id"] for e in entries][:2] == ["c#0", "c#1"]
    # the next save after the crash works and keeps everything
    session.set_label("d#0", "ALL", "HEM", "after the crash")
    assert labels(tmp_path)["c#1"] == "ALL" and labels(tmp_path)["d#0"] == "ALL"


# ---------------------------------------------------------------------------------------------- two processes

def test_two_processes_labelling_one_folder_lose_no_label(tmp_path, review_child):
    """Two processes label different cells of one case at the same moment: every label of both is saved."""
    n = 25
    start_at = time.time() + 3.0
    procs = [review_child(tmp_path, prefix, n, START_AT=start_at) for prefix in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    got = labels(tmp_path)
    expected = {f"{prefix}#{i}": "ALL" if i % 2 else "HEM" for prefix in ("a", "b") for i in range(n)}
    assert got == expected, f"lost: {sorted(set(expected) - set(got))}"
    entries = ReviewSession.open(tmp_path).audit_entries()
    assert len(entries) == 2 * n


def test_a_session_takes_in_labels_another_saved_and_never_writes_them_back_stale(tmp_path):
    """Window A opened before window B saved: A's next change keeps B's label and A now shows it."""
    a = ReviewSession.open(tmp_path, MODEL)
    b = ReviewSession.open(tmp_path, MODEL)
    b.set_label("x#1", "ALL", "HEM", "B")
    a.set_label("x#2", "HEM", "ALL", "A")
    a.set_position("x", "x#2")
    assert labels(tmp_path) == {"x#1": "ALL", "x#2": "HEM"}
    assert a.reviewed_label("x#1") == "ALL"
    b.undo("B")                                   # B's undo removes B's label only
    assert labels(tmp_path) == {"x#2": "HEM"}
    assert a.reviewed_label("x#1") == "ALL"       # A learns of it on its next change, or on refresh()
    a.refresh()
    assert a.reviewed_label("x#1") is None and a.reviewed_label("x#2") == "HEM"


# ---------------------------------------------------------------------------------------------- full disk

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["audit", "review"])
def test_disk_full_while_saving_keeps_the_saved_review_and_says_so(tmp_path, monkeypatch, where):
    s = ReviewSession.open(tmp_path, MODEL)
    s.set_label("f#1", "HEM", "ALL", "r")
    state = (tmp_path / ".leukviewer" / "review.json").read_bytes()
    audit = (tmp_path / ".leukviewer" / "audit.jsonl").read_bytes()
    if where == "audit":     # the audit line cannot be synced
        monkeypatch.setattr(os, "fsync", _enospc)
    else:                    # the new review.json cannot be written
        real = os.fdopen

        def fdopen(fd, mode="r", *a, **k):
            f = real(fd, mode, *a, **k)
            if "w" in mode:
                f.write = _enospc
            return f
        monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(ReviewError, match="the disk is full.*the review saved before it is intact"):
        s.set_label("f#2", "ALL", "HEM", "r")
    monkeypatch.undo()
    assert (tmp_path / ".leukviewer" / "review.json").read_bytes() == state
    assert (tmp_path / ".leukviewer" / "audit.jsonl").read_bytes() == audit   # no claim of an unsaved change
    assert s.reviewed_label("f#2") is None and s.reviewed_label("f#1") == "HEM"
    assert [p.name for p in (tmp_path / ".leukviewer").iterdir() if p.name.startswith(".")] == []
    s.undo("r")      # the failed change is not in the undo history: undo takes back f#1
    assert labels(tmp_path) == {}


# ---------------------------------------------------------------------------------------------- torn audit line

def test_a_torn_last_audit_line_is_skipped_reported_and_the_next_entry_stays_whole(tmp_path):
    s = ReviewSession.open(tmp_path, MODEL)
    s.set_label("f#1", "HEM", "ALL", "r")
    s.set_label("f#2", "ALL", "ALL", "r")
    with open(s.audit_path, "ab") as f:
        f.write(b'{"time": "2026-01-01T00:00:00", "reviewer": "r", "cell_')   # a crash mid-append
    again = ReviewSession.open(tmp_path, MODEL)
    assert [e["cell_id"] for e in again.audit_entries()] == ["f#1", "f#2"]
    assert "damaged (its last line cannot be read" in again.audit_damage
    again.set_label("f#3", "UNCERTAIN", "ALL", "r")
    assert [e["cell_id"] for e in again.audit_entries()] == ["f#1", "f#2", "f#3"]
    assert "line 3 cannot be read" in again.audit_damage
    assert labels(tmp_path) == {"f#1": "HEM", "f#2": "ALL", "f#3": "UNCERTAIN"}


# ---------------------------------------------------------------------------------------------- directory sync

def _record_syncs(monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file", None))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("replace", os.path.dirname(os.path.abspath(dst))))
        return real_replace(src, dst, *a, **k)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(os.name == "nt", reason="Windows journals renames; directories cannot be synced there")
def test_every_atomic_save_syncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    from leukviewer.core.settings import Settings
    from training.modelfolder import atomic_write_text

    events = _record_syncs(monkeypatch)
    atomic_write_text(tmp_path / "a.json", "{}")
    ReviewSession.open(tmp_path, MODEL).set_label("f#1", "HEM", "ALL", "r")
    Settings().save(tmp_path / "settings.json")
    replaces = [i for i, (kind, _) in enumerate(events) if kind == "replace"]
    assert len(replaces) == 3
    for i in replaces:
        assert ("fsync-dir", None) in events[i + 1:i + 2], events
