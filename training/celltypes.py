"""The white-cell types a leukviewer model can predict: the one vocabulary shared by training, the app and reports.

A multi-class model folder lists some of these in ``class_names`` and names ``positive_class: "blast"``; the blast
flag is P(blast). A legacy binary blast/normal folder (``["HEM", "ALL"]``) maps ALL -> blast, HEM -> lymphoid.
"""
from __future__ import annotations

BLAST = "blast"
NON_WBC = "non_wbc"

# name -> what a hematologist calls it (display text for tables, tooltips and the PDF)
CELL_TYPES: dict[str, str] = {
    "blast": "Blast",
    "lymphoid": "Lymphocyte / normal lymphoid",
    "neutrophil": "Neutrophil",
    "monocyte": "Monocyte",
    "eosinophil": "Eosinophil",
    "basophil": "Basophil",
    "ig": "Immature granulocyte",
    "erythroblast": "Erythroblast",
    "non_wbc": "Not a white cell",
}

# name -> a few letters for tight places (the caption under a gallery thumbnail: about 70 px with "0.12 ")
SHORT_NAMES: dict[str, str] = {
    "blast": "Blast", "lymphoid": "Lym", "neutrophil": "Neu", "monocyte": "Mono", "eosinophil": "Eos",
    "basophil": "Baso", "ig": "IG", "erythroblast": "EB", "non_wbc": "nWBC",
}

LEGACY_BINARY = {"ALL": BLAST, "HEM": "lymphoid"}


def cell_type_of_class(class_name: str) -> str:
    """The cell type a model class stands for (legacy binary names mapped, multi-class names unchanged)."""
    name = LEGACY_BINARY.get(class_name, class_name)
    if name not in CELL_TYPES:
        raise ValueError(f"unknown cell type {class_name!r}; known: {', '.join(CELL_TYPES)}")
    return name


def is_white_cell(cell_type: str) -> bool:
    """Whether a cell of this type counts among the white cells (the denominator of blasts per 100 WBC)."""
    return cell_type != NON_WBC
