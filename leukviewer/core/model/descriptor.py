"""The one description of a model folder: what the classifier, the registry, the window's model label, the reports
(PDF header, CSV, GeoJSON), ``summary.json`` and the review session say about a model. Built in one place
(:meth:`ModelDescriptor.from_meta`) from the folder's ``model.json`` as ``training.modelfolder`` reads and verifies
it; nothing about a model is described anywhere else. No TensorFlow.

For Research Use Only. Not for use in diagnostic procedures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CARD_NAMES = ("MODEL_CARD.md", "model_card.md", "README.md")


@dataclass(frozen=True)
class ModelDescriptor:
    """A model: identity (name, version, weights' and manifest's SHA-256, folder), decision rule (threshold,
    uncertainty band), classes and what they mean (class names, cell types, positive class), and its own words
    (model.json as ``meta``, the model card)."""
    name: str
    version: str
    sha256: str                          # of the weights
    threshold: float
    uncertainty_band: tuple[float, float]
    meta: dict = field(default_factory=dict, compare=False)
    card: str | None = field(default=None, compare=False)
    folder: str | None = None
    manifest_sha256: str | None = None   # SHA-256 of manifest.sha256 (covers model.json); None: a folder without one
    class_names: tuple[str, ...] = ()
    positive_class: str | None = None

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]

    @property
    def display_name(self) -> str:
        return f"{self.name} {self.version}".strip()

    @property
    def cell_types(self) -> tuple[str, ...]:
        """The white-cell type of each model class, in class order (HEM -> lymphoid, ALL -> blast)."""
        from training.celltypes import cell_type_of_class

        return tuple(cell_type_of_class(c) for c in self.class_names)

    @property
    def tta_views(self) -> int:
        """Flips/rotations of each cell whose outputs the model averages (1 = none; model.json's
        test_time_augmentation)."""
        from training.modelfolder import tta_views

        return tta_views(self.meta)

    @property
    def integrity_warning(self) -> str | None:
        """What the user must be told about a folder without a manifest (its model.json is not verified)."""
        if self.manifest_sha256 or not self.folder:
            return None
        from training.modelfolder import legacy_warning

        return legacy_warning(Path(self.folder))

    def identity(self) -> dict:
        """name, version and sha256: what a review session and a cell record of the model."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    # ------------------------------------------------------------------ the one place a description is made

    @classmethod
    def from_meta(cls, folder: str | Path, meta: dict, manifest_sha256: str | None,
                  card: str | None = None) -> "ModelDescriptor":
        """From a folder's model.json as ``training.modelfolder`` read it (``read_meta``/``verify_folder``)."""
        from training.modelfolder import META_FILE, decision_rule

        folder = Path(folder)
        threshold, band = decision_rule(meta, folder / META_FILE)
        return cls(str(meta.get("name", folder.name)), str(meta.get("version", "")), str(meta["weights"]["sha256"]),
                   float(threshold), (float(band[0]), float(band[1])), meta, card, str(folder), manifest_sha256,
                   tuple(meta.get("class_names", ())), meta.get("positive_class"))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelDescriptor":
        """From a model folder's model.json, manifest and card, without loading the network or hashing the weights
        (``ModelFolderError`` when model.json is missing or unusable)."""
        from training.modelfolder import manifest_sha256, read_meta

        folder = Path(folder)
        return cls.from_meta(folder, read_meta(folder), manifest_sha256(folder), read_card(folder))

    @classmethod
    def read(cls, folder: str | Path) -> "ModelDescriptor | None":
        """:meth:`from_folder`, or None when the folder cannot be described (the loader explains why)."""
        try:
            return cls.from_folder(folder)
        except (ValueError, OSError, KeyError, TypeError):   # ModelFolderError is a ValueError
            return None

    @classmethod
    def of(cls, model, model_dir: str | Path | None = None) -> "ModelDescriptor":
        """The description a report uses: ``model`` (a descriptor, or a dict with name, version, sha256 and
        optionally threshold and uncertainty_band) completed from ``model_dir`` when that folder holds the same
        model. Without a threshold of its own the model's folder must supply it (a report never guesses one)."""
        if isinstance(model, ModelDescriptor) and model_dir is None:
            return model
        described = cls.read(model_dir) if model_dir is not None else None
        if model is None:
            if described is not None:
                return described
            raise ValueError("the report needs the model's description (model_info or model_dir)")
        get = model.get if isinstance(model, dict) else (lambda k, d=None: getattr(model, k, d))
        same_model = described is not None and described.sha256 == get("sha256")
        if get("threshold") is not None:
            threshold = float(get("threshold"))
            band = get("uncertainty_band") or (threshold, threshold)
        elif same_model:      # a name and hash only (the model not loaded): the rule from its folder
            threshold, band = described.threshold, described.uncertainty_band
        else:
            raise ValueError(f"the decision threshold of model {get('name', '')} {get('version', '')} is unknown "
                             "(its model.json could not be read); the report would show wrong calls")
        meta, card = (described.meta, described.card) if same_model else ({}, None)
        if not meta and isinstance(model, ModelDescriptor):
            meta, card = model.meta, model.card
        manifest = get("manifest_sha256") or (described.manifest_sha256 if same_model else None)
        class_names = tuple(get("class_names") or (described.class_names if same_model else ()))
        positive = get("positive_class") or (described.positive_class if same_model else None)
        return cls(str(get("name", "")), str(get("version", "")), str(get("sha256", "")), threshold,
                   (float(band[0]), float(band[1])), meta, card, str(model_dir) if model_dir else get("folder"),
                   manifest, class_names, positive)


def read_card(folder: str | Path) -> str | None:
    """The folder's model card (MODEL_CARD.md, else model_card.md or README.md); None when it has none."""
    for name in CARD_NAMES:
        path = Path(folder) / name
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
    return None
