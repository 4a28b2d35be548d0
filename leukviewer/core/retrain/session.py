"""The files of one retraining on disk: ``<runs dir>/wizard/<id>/`` holds the assembled data, the checkpoints and
the candidate model folder; ``pending.json`` beside the sessions names the one not yet accepted, so the wizard
offers to resume it after the app restarts. No Qt."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..paths import remove_tree_inside

SESSION_FILE = "session.json"
PENDING_FILE = "pending.json"


def wizard_runs_dir() -> Path:
    from training.loop import default_runs_dir

    return default_runs_dir() / "wizard"


@dataclass
class RetrainSession:
    """The files of one retraining: ``data/`` (assembled data), ``run/`` (checkpoints), ``model/`` (candidate)."""
    root: Path
    info: dict = field(default_factory=dict)

    @classmethod
    def create(cls) -> "RetrainSession":
        base = wizard_runs_dir()
        base.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=base))
        session = cls(root, {"created": datetime.now().astimezone().isoformat(timespec="seconds")})
        session.save()
        return session

    @classmethod
    def load(cls, root: Path) -> "RetrainSession | None":
        try:
            info = json.loads((Path(root) / SESSION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return cls(Path(root), info if isinstance(info, dict) else {})

    @classmethod
    def pending(cls) -> "RetrainSession | None":
        """The session that was trained but not accepted or discarded (resumable), if any."""
        marker = wizard_runs_dir() / PENDING_FILE
        try:
            root = Path(json.loads(marker.read_text(encoding="utf-8"))["session"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        if not root.resolve().is_relative_to(wizard_runs_dir().resolve()):
            marker.unlink(missing_ok=True)  # a damaged or crafted marker: never a session to resume or delete
            return None
        session = cls.load(root)
        if session is None or not session.info.get("config"):
            marker.unlink(missing_ok=True)  # a stale marker (the session was removed by hand)
            return None
        return session

    run_dir = property(lambda self: self.root / "run")
    candidate = property(lambda self: self.root / "model")
    data_dir = property(lambda self: self.root / "data")
    reviewed_dir = property(lambda self: self.root / "reviewed")
    heldout_dir = property(lambda self: self.root / "heldout")
    eval_dir = property(lambda self: self.root / "evaluation")

    def save(self) -> None:
        from training.modelfolder import atomic_write_text

        atomic_write_text(self.root / SESSION_FILE, json.dumps(self.info, indent=1, ensure_ascii=False))

    def mark_pending(self) -> None:
        from training.modelfolder import atomic_write_text

        atomic_write_text(wizard_runs_dir() / PENDING_FILE, json.dumps({"session": str(self.root)}))

    def is_pending(self) -> bool:
        pending = RetrainSession.pending()
        return pending is not None and pending.root == self.root

    def clear_pending(self) -> None:
        if self.is_pending():
            (wizard_runs_dir() / PENDING_FILE).unlink(missing_ok=True)

    def discard(self) -> None:
        remove_tree_inside(self.root, wizard_runs_dir())   # refused (nothing deleted) outside the runs folder
        self.clear_pending()

    def remove_training(self) -> None:
        """Start over: the checkpoints and the candidate go, the data stays."""
        remove_tree_inside(self.run_dir, wizard_runs_dir())
        remove_tree_inside(self.candidate, wizard_runs_dir())

    def run_state(self) -> dict | None:
        try:
            return json.loads((self.run_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def candidate_ready(self) -> bool:
        from training.modelfolder import ModelFolderError, read_meta

        try:
            read_meta(self.candidate)
            return True
        except ModelFolderError:
            return False

    def config(self) -> dict:
        """The training configuration of this session: the run's own once it has checkpointed."""
        state = self.run_state()
        return dict(state["config"]) if state else dict(self.info.get("config") or {})

    def describe(self) -> str:
        state = self.run_state() or {}
        cfg = self.config()
        when = self.info.get("created", "")[:16].replace("T", " ")
        if state.get("finished") and self.candidate_ready():
            return f"A model trained on {when} was not accepted yet ({cfg.get('name')} {cfg.get('version')})."
        return (f"An unfinished training of {when} can be resumed ({cfg.get('name')} {cfg.get('version')}: "
                f"epoch {state.get('epochs_done', 0)} of {total_epochs(cfg)} done).")


def total_epochs(config: dict) -> int:
    """Epochs of a training configuration (as a dict), both phases."""
    return int(config.get("head_epochs", 0)) + int(config.get("epochs", 0))
