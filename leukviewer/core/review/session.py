"""The hematologist's review of a case: every confirmation and change, saved after each one.

State lives beside the case folder in ``.leukviewer/review.json`` (written atomically: temporary file, synced,
renamed, directory synced) with an append-only ``audit.jsonl`` next to it. When the case folder is read-only, both
go to the user's data directory instead (``paths.review_dir`` decides); a folder reviewed before it became read-only
(an archived case) opens with its review, and its first new change moves the review there. Reopening the folder restores the review and the reviewer's position.

Several windows (or processes) may review one case at once: every change is
merged into what is on disk at the moment it is saved, under a short exclusive lock (``review.lock``), so no
window ever writes back a stale copy over another's labels. Each window sees the others' labels after its next
change or on :meth:`ReviewSession.refresh`. Two reviewers labelling the same cell: the later label stands, and
the audit log keeps both.

A failed save (disk full, permission lost) leaves the file on disk as it was, the session in memory as it was
(the change is not half-applied), and raises :class:`ReviewError` saying why.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from training.celltypes import BLAST, CELL_TYPES

from ..atomic import atomic_write_json
from ..model.classifier import LABEL_BLAST, LABEL_NORMAL, LABELS, cell_type_for
from ..paths import STATE_DIR, STATE_FILE, fallback_review_dir, review_dir
from ..analysis.results import count_cells, counted_cells

FORMAT = "leukviewer-review"
FORMAT_VERSION = 1
AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "review.lock"


class ReviewError(ValueError):
    """A review state that cannot be read or written, with the reason."""


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


# A save refused for these reasons means the folder cannot be written (archived, read-only disk, no rights).
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block; waits for other holders.

    Held only for the few milliseconds of a read-merge-write, so waiting is short; the operating system drops
    it when the holder dies (kill -9 included), so a crashed window never blocks the others.
    """
    f = open(path, "a+b")
    try:
        if os.name == "nt":
            import msvcrt

            f.seek(0)
            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:   # LK_LOCK gives up after ~10 s; keep waiting
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    finally:
        f.close()


def _save_failure(path: Path, e: OSError) -> ReviewError:
    from ..paths import os_error_reason

    return ReviewError(f"{os_error_reason(e)}: the change was not saved in {path.parent}; "
                       "the review saved before it is intact")


@dataclass
class CellReview:
    label: str
    suggested: str
    reviewer: str
    time: str
    cell_type: str | None = None       # the reviewer's white-cell type; None: the model's, following the label


@dataclass
class _Change:
    cell_id: str
    before: CellReview | None
    after: CellReview | None


@dataclass
class ReviewSession:
    """Labels a reviewer gave, an undo/redo history and the position, autosaved after every change."""
    folder: Path
    directory: Path
    reviews: dict[str, CellReview] = field(default_factory=dict)
    position: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    saved_model: dict = field(default_factory=dict)
    audit_damage: str | None = None
    moved_from: Path | None = None      # where the review was before the folder turned out read-only
    _undo: list[_Change] = field(default_factory=list)
    _redo: list[_Change] = field(default_factory=list)

    # ---------------------------------------------------------------- open / save

    @classmethod
    def open(cls, folder: str | Path, model: dict | None = None) -> "ReviewSession":
        folder = Path(folder).resolve()
        directory = review_dir(folder)
        session = cls(folder, directory, model=dict(model or {}))
        data = session._read_state()
        if data is not None:
            session.reviews = _reviews_from(data)
            session.position = data.get("position", {})
            session.saved_model = data.get("model", {})
            if not session.model:
                session.model = session.saved_model
        return session

    def snapshot(self) -> "ReviewSnapshot":
        """The review as it is now, frozen: what a report written while the reviewer keeps labelling shows (every
        table and page of one export from the same moment)."""
        reviews = self.reviews    # _commit and refresh replace the dict, never change it in place
        return ReviewSnapshot(self.folder, self.directory, dict(reviews), dict(self.position), dict(self.model),
                              dict(self.saved_model), self.audit_damage, self.moved_from)

    def location_note(self) -> str | None:
        """Where the review is saved, in words, when that is not beside the folder (None when it is)."""
        beside = self.folder / STATE_DIR
        if self.directory == beside:
            if self.state_path.is_file() and not os.access(self.directory, os.W_OK):
                return (f"The folder is read-only: its saved review is shown; changes will be saved in "
                        f"{fallback_review_dir(self.folder)}.")
            return None
        return f"The folder is read-only: the review is saved in {self.directory}."

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def audit_path(self) -> Path:
        return self.directory / AUDIT_FILE

    def model_changed(self) -> bool:
        """True if the saved review was made with a different model (cell numbering may differ)."""
        saved = self.saved_model
        return bool(saved.get("sha256") and self.model.get("sha256") and saved["sha256"] != self.model["sha256"])

    @property
    def lock_path(self) -> Path:
        return self.directory / LOCK_FILE

    def _read_state(self) -> dict | None:
        """review.json as saved now, or None when there is none yet."""
        path = self.state_path
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ReviewError(f"the saved review {path} cannot be read ({e}); it was left untouched") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ReviewError(f"{path} is not a leukviewer review file")
        return data

    def refresh(self) -> None:
        """Take in the labels other windows saved since this one last read or wrote the review."""
        data = self._read_state()
        if data is not None:
            self.reviews = _reviews_from(data)

    def _commit(self, cell_id: str | None = None, review: CellReview | None = None, audit: dict | None = None,
                position: dict | None = None) -> None:
        """Save one change merged into the review as it is on disk now (another window may have saved since).

        Under the lock: append the audit line, read review.json, apply this change only, write it atomically.
        On failure nothing in memory changes and the file on disk is the one before.
        """
        try:
            reviews, new_position = self._save_merged(cell_id, review, audit, position)
        except OSError as e:
            fallback = fallback_review_dir(self.folder)
            if e.errno not in _READ_ONLY or self.directory == fallback:
                raise _save_failure(self.state_path, e) from None
            # The folder cannot be written (it was archived read-only): the review continues in the user's data
            # folder, from the labels and audit log saved beside the folder.
            beside = self.directory
            try:
                fallback.mkdir(parents=True, exist_ok=True)
                if self.audit_path.is_file() and not (fallback / AUDIT_FILE).exists():
                    shutil.copyfile(self.audit_path, fallback / AUDIT_FILE)
                self.directory = fallback
                reviews, new_position = self._save_merged(cell_id, review, audit, position)
            except OSError as e2:
                self.directory = beside
                raise _save_failure(fallback / STATE_FILE, e2) from None
            self.moved_from = beside
        self.reviews = reviews
        self.position = new_position

    def _save_merged(self, cell_id, review, audit, position) -> tuple[dict[str, CellReview], dict]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.lock_path):
            data = self._read_state()
            reviews = _reviews_from(data) if data is not None else dict(self.reviews)
            if cell_id is not None:
                if review is None:
                    reviews.pop(cell_id, None)
                else:
                    reviews[cell_id] = review
            new_position = self.position if position is None else position
            audit_size = self.audit_path.stat().st_size if self.audit_path.is_file() else 0
            try:
                if audit is not None:
                    self._append_audit(audit)
                self._write(reviews, new_position)
            except OSError:
                if audit is not None:   # the change was not saved: the audit log must not claim it was
                    with contextlib.suppress(OSError):
                        os.truncate(self.audit_path, audit_size)
                raise
        return reviews, new_position

    def _write(self, reviews: dict[str, CellReview], position: dict) -> None:
        atomic_write_json(self.state_path, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "folder": str(self.folder), "updated": now_iso(),
            "model": self.model, "position": position,
            "reviews": {k: vars(v) for k, v in sorted(reviews.items())},
        })

    def save(self) -> None:
        """Save the position and model (the labels as merged on disk; this window's are saved as they change)."""
        self._commit()

    def _append_audit(self, entry: dict) -> None:
        with open(self.audit_path, "a+b") as f:
            # A crash mid-append can leave a torn last line; start on a fresh line so this entry stays whole.
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def _entry(self, cell_id: str, old: CellReview | None, new: CellReview | None, reviewer: str,
               action: str) -> dict:
        """One audit line: labels as "old"/"new", the reviewer's types as "old_type"/"new_type"."""
        return {"time": now_iso(), "reviewer": reviewer, "cell_id": cell_id, "old": old.label if old else None,
                "new": new.label if new else None, "old_type": old.cell_type if old else None,
                "new_type": new.cell_type if new else None, "action": action,
                "model_sha256": self.model.get("sha256")}

    # ---------------------------------------------------------------- changes

    def reviewed_label(self, cell_id: str) -> str | None:
        r = self.reviews.get(cell_id)
        return r.label if r else None

    def reviewed_type(self, cell_id: str) -> str | None:
        """The white-cell type the reviewer gave the cell (None: they gave none)."""
        r = self.reviews.get(cell_id)
        return r.cell_type if r else None

    def set_label(self, cell_id: str, label: str, suggested: str, reviewer: str) -> None:
        """Record the reviewer's label for a cell (confirming the suggestion is label == suggested).

        A type the reviewer gave earlier stays unless the new label contradicts it (a blast that is no longer ALL,
        or another type now called ALL); then the type follows the label again."""
        if label not in LABELS:
            raise ReviewError(f"unknown label {label!r}; use one of {', '.join(LABELS)}")
        if not reviewer:
            raise ReviewError("a review needs the reviewer's name")
        before = self.reviews.get(cell_id)
        kept = before.cell_type if before else None
        if kept and (kept == BLAST) != (label == LABEL_BLAST):
            kept = None
        self._record(cell_id, before, CellReview(label, suggested, reviewer, now_iso(), kept),
                     audit_action(before.label if before else None, label, suggested))

    def set_type(self, cell_id: str, cell_type: str, suggested: str, reviewer: str) -> None:
        """Record the reviewer's white-cell type for a cell (``suggested``: the model's label). The label follows:
        a blast is ALL, any other type is not a blast (HEM)."""
        if cell_type not in CELL_TYPES:
            raise ReviewError(f"unknown cell type {cell_type!r}; use one of {', '.join(CELL_TYPES)}")
        if not reviewer:
            raise ReviewError("a review needs the reviewer's name")
        label = LABEL_BLAST if cell_type == BLAST else LABEL_NORMAL
        self._record(cell_id, self.reviews.get(cell_id), CellReview(label, suggested, reviewer, now_iso(), cell_type),
                     "type")

    def _record(self, cell_id: str, before: CellReview | None, after: CellReview, action: str) -> None:
        self._commit(cell_id, after, self._entry(cell_id, before, after, after.reviewer, action))
        self._undo.append(_Change(cell_id, before, after))
        self._redo.clear()

    def confirm(self, cell_id: str, suggested: str, reviewer: str) -> None:
        self.set_label(cell_id, suggested, suggested, reviewer)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self, reviewer: str) -> str | None:
        """Undo the last change; returns the cell id it touched."""
        if not self._undo:
            return None
        change = self._undo[-1]
        self._commit(change.cell_id, change.before,
                     self._entry(change.cell_id, change.after, change.before, reviewer, "undo"))
        self._redo.append(self._undo.pop())
        return change.cell_id

    def redo(self, reviewer: str) -> str | None:
        if not self._redo:
            return None
        change = self._redo[-1]
        self._commit(change.cell_id, change.after,
                     self._entry(change.cell_id, change.before, change.after, reviewer, "redo"))
        self._undo.append(self._redo.pop())
        return change.cell_id

    def set_position(self, image: str | None, cell_id: str | None) -> None:
        self._commit(position={"image": image, "cell_id": cell_id})

    def audit_entries(self) -> list[dict]:
        """Every readable line of the audit log. A damaged line (a torn last line after a crash or a full disk)
        is skipped and described in :attr:`audit_damage`, so the rest of the history stays readable."""
        self.audit_damage = None
        if not self.audit_path.is_file():
            return []
        entries, bad = [], []
        lines = self.audit_path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
                if not isinstance(entry, dict):
                    raise ValueError("not an entry")
            except (ValueError, UnicodeDecodeError):
                bad.append(number)
                continue
            entries.append(entry)
        if bad:
            where = "its last line" if bad == [len(lines) - (0 if lines[-1] else 1)] else \
                f"line{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}"
            self.audit_damage = (f"The audit log {self.audit_path} is damaged ({where} cannot be read, probably cut "
                                 f"off by a crash or a full disk); the {len(entries)} readable entries are shown "
                                 "and the saved labels are not affected.")
        return entries


class ReviewSnapshot(ReviewSession):
    """A frozen copy of a review (``ReviewSession.snapshot``): read like the session, never changed or saved."""

    def _commit(self, *args, **kwargs) -> None:
        raise ReviewError("a snapshot of a review cannot be changed")

    def refresh(self) -> None:
        pass

    def snapshot(self) -> "ReviewSnapshot":
        return self


def _reviews_from(data: dict) -> dict[str, CellReview]:
    return {k: CellReview(**v) for k, v in data.get("reviews", {}).items()}


def audit_action(old: str | None, new: str, suggested: str) -> str:
    """What a label change did, in the audit log's words: "confirm" (the model's label, first time or again),
    "change" (a label other than the model's), "revert to model" (back from another label to the model's)."""
    if new != suggested:
        return "change"
    return "revert to model" if old is not None and old != suggested else "confirm"


def final_label(cell, session: ReviewSession | None) -> str:
    """The reviewed label where there is one, else the model's suggestion."""
    reviewed = session.reviewed_label(cell.cell_id) if session else None
    return reviewed or cell.label


def final_type(cell, session: ReviewSession | None) -> str:
    """The white-cell type after review: the reviewer's type where they gave one; else the model's type, made to
    agree with the label after review (a cell confirmed ALL is a blast; a blast the reviewer cleared becomes its
    most probable other type)."""
    return type_after_review(cell, session.reviews.get(cell.cell_id) if session else None)


def type_after_review(cell, review: CellReview | None) -> str:
    """``final_type`` from the cell's own review (None: not reviewed)."""
    if review is not None and review.cell_type:
        return review.cell_type
    label = review.label if review else cell.label
    if label == cell.label or (label != LABEL_BLAST and cell.cell_type != "blast"):
        return cell.cell_type
    return cell_type_for(cell.type_probabilities, label)


def reviewed_counts(cells, session: ReviewSession | None) -> dict:
    """Counts after review (``results.count_cells`` of the labels and types after review: the reviewer's where
    they reviewed, the model's suggestion elsewhere), with the numbers of reviewed cells and of cells whose label
    or type the reviewer changed, and the two parts apart so no surface passes the model's suggestions off as
    reviewed: ``by_reviewer`` (``count_cells`` of the reviewed cells only, with the reviewer's labels and types)
    and ``not_reviewed`` (the model's suggestions for the cells nobody reviewed). After review a reviewed cell is
    decided unless the reviewer called it UNCERTAIN; the blast percentage's range (``blast_percentage_min`` /
    ``_max``) counts the cells still UNCERTAIN, reviewed or not."""
    everything = list(cells)
    cells = counted_cells(everything)   # cells cut by the image border are shown, not counted
    counts = count_cells((final_label(c, session), final_type(c, session)) for c in cells)
    reviewed = [c for c in cells if session and c.cell_id in session.reviews]
    not_reviewed = [c for c in cells if not (session and c.cell_id in session.reviews)]
    changed = [c for c in reviewed if session.reviewed_label(c.cell_id) != c.label
               or final_type(c, session) != c.cell_type]
    return {**counts, "reviewed": len(reviewed), "changed": len(changed),
            "by_reviewer": count_cells((final_label(c, session), final_type(c, session)) for c in reviewed),
            "not_reviewed": count_cells((c.label, c.cell_type) for c in not_reviewed),
            "border_cells_excluded": len(everything) - len(cells)}
