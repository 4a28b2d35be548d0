"""The report's "Method" and "Limitations": taken from the model folder's card when it has them, else written from
its model.json, else a fixed text that holds for every leukviewer model. Used by the PDF (``report_pdf``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ... import RUO_NOTICE

if TYPE_CHECKING:
    from ..model.descriptor import ModelDescriptor

FALLBACK_METHOD = (
    "White cells were located in each image by colour and shape (nucleus stain, cell outline) and each cell was "
    "classified by a convolutional neural network as a leukemic blast (ALL) or a normal cell (HEM). The network "
    "outputs a calibrated probability of ALL; cells at or above the decision threshold are suggested as blasts, "
    "cells strictly inside the uncertainty band are marked UNCERTAIN for the reviewer's attention.")
FALLBACK_LIMITATIONS = (
    "The model was trained on single-cell crops from one public data set; stains, scanners, magnifications or cell "
    "types it has not seen (e.g. other leukemias, reactive lymphocytes) can be classified wrongly with high "
    "confidence.",
    "Localisation can miss, merge or split cells, especially in crowded fields and at image borders (partial cells "
    "are marked).",
    "Probabilities are estimates, not diagnoses; every flagged cell needs a qualified hematologist's review, and "
    "counts are only as complete as the review.",
)


def _markdown_sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of a Markdown text; text before the first heading has heading ''."""
    sections, heading, body = [], "", []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            if any(b.strip() for b in body):
                sections.append((heading, "\n".join(body).strip()))
            heading, body = line.lstrip("# ").strip(), []
        else:
            body.append(line)
    if any(b.strip() for b in body):
        sections.append((heading, "\n".join(body).strip()))
    return sections


def _plain_items(markdown: str) -> list[str]:
    """Markdown body -> plain sentences: one per list item or paragraph (emphasis, code and links removed,
    tables dropped)."""
    import re

    text = re.sub(r"`([^`]*)`", r"\1", markdown)
    text = re.sub(r"\*\*([^*]+)\*\*|__([^_]+)__", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?!\w)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    items: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        bullet = re.match(r"^([-*+]|\d+\.)\s+", stripped)
        if not stripped or stripped.startswith("|") or bullet:
            if current:
                items.append(" ".join(current))
            current = [stripped[bullet.end():]] if bullet else []
        else:
            current.append(stripped)
    if current:
        items.append(" ".join(current))
    return [i if i.endswith((".", "!", "?", ":")) else i + "." for i in (x.strip() for x in items) if i]


def _plain(markdown: str) -> str:
    return " ".join(_plain_items(markdown))


def _metric_sentence(meta: dict) -> str:
    metrics = meta.get("metrics") or {}
    test = metrics.get("test") or {}
    if not test:
        return ""
    parts = []
    for key, label in (("sensitivity", "sensitivity for ALL"), ("specificity", "specificity"),
                       ("balanced_accuracy", "balanced accuracy"), ("roc_auc", "ROC-AUC")):
        value = test.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:.2f}")
    if not parts:
        return ""
    where = metrics.get("measured_on", "a held-out test set")
    sentence = f"Measured on {where} ({test.get('n', '?')} cells): {', '.join(parts)}."
    if metrics.get("warning"):
        sentence += f" Warning: {metrics['warning']}"
    return sentence


def _method_from_meta(model: ModelDescriptor) -> str:
    meta = model.meta or {}
    if not meta:
        return ""
    arch = meta.get("architecture", {})
    data = (meta.get("training") or {}).get("data") or {}
    split = (meta.get("training") or {}).get("split") or {}
    calibration = meta.get("calibration") or {}
    decision = meta.get("decision") or {}
    bits = [f"Each located white cell was classified by {model.name} {model.version}"
            + (f" ({arch['backbone']} backbone, {arch.get('input_size', ['?'])[0]} px input)"
               if arch.get("backbone") else "") + "."]
    if data.get("images"):
        per_class = ", ".join(f"{n} {c}" for c, n in (data.get("per_class") or {}).items())
        bits.append(f"It was trained on {data['images']} cell images"
                    + (f" ({per_class})" if per_class else "")
                    + (f" from {data['subjects']} subjects" if data.get("subjects") else "")
                    + (f", {split['kind']}-disjoint split" if split.get("kind") and not split.get("leaks_subjects")
                       else "") + ".")
    if calibration.get("fitted_on"):
        bits.append(f"Probabilities are temperature-calibrated (T = {float(calibration.get('temperature', 1)):.3g}, "
                    f"fitted on the {calibration['fitted_on']}).")
    if decision.get("chosen_by"):
        bits.append(f"Decision rule: {decision['chosen_by']}.")
    sentence = _metric_sentence(meta)
    if sentence:
        bits.append(sentence)
    return " ".join(bits)


def method_and_limitations(model: ModelDescriptor) -> tuple[str, list[str]]:
    """(method paragraph, limitation sentences) for the report.

    The model card's "Method" section where it has one, else a summary of model.json (architecture, training
    data, calibration, decision rule, test metrics), else a generic text; the card's "Intended use" and the
    source line of its "Training data" lead. Limitations: the card's "Limitations" section, else a generic
    list.
    """
    method, intended, source, limitations = "", "", "", []
    for heading, body in _markdown_sections(model.card or ""):
        h = heading.lower()
        if any(k in h for k in ("limitation", "caveat", "warning", "risk")):
            # the RUO sentence is on every page already
            limitations += [i for i in _plain_items(body) if i.strip(" .") != RUO_NOTICE.strip(" .")]
        elif any(k in h for k in ("method", "how it works")):
            method += (" " if method else "") + _plain(body)
        elif "intended use" in h:
            intended = _plain(body)
        elif "training data" in h:
            source = next((i for i in _plain_items(body) if i.lower().startswith("source")), "")
    method = method or _method_from_meta(model) or FALLBACK_METHOD
    meta = model.meta or {}
    if source:
        method = f"{method} Training data {source[0].lower()}{source[1:]}"
    if intended:
        method = f"Intended use: {intended} {method}"
    elif meta.get("intended_use"):
        method = f"{method} Intended use: {meta['intended_use']}"
    if not limitations:
        limitations = list(FALLBACK_LIMITATIONS)
    if (meta.get("training") or {}).get("split", {}).get("leaks_subjects"):
        limitations.append("The reported metrics come from a split that shares patients between training and "
                           "testing; they overestimate performance on new patients.")
    return method, limitations
