"""MODEL_CARD.md of a retrained model: the retraining's data sources, parent model and comparison. No Qt."""
from __future__ import annotations

from pathlib import Path

from ..model.registry import RegisteredModel
from .compare import METRIC_ROWS, format_value


def data_description(sources: dict) -> list[str]:
    """The data of a retraining in words: the labelled folder and/or the reviewed cases."""
    parts = []
    if sources.get("folder"):
        parts.append(f"the labelled folder {sources['folder']}")
    reviewed = sources.get("reviewed")
    if reviewed and reviewed.get("images"):
        cases = reviewed.get("cases", [])
        parts.append(f"{reviewed['images']} cells reviewed in leukviewer in {len(cases)} case(s) (" +
                     ", ".join(f"{Path(c['folder']).name} = subject {c['subject']}" for c in cases) +
                     f"); {reviewed.get('uncertain_excluded', 0)} cells reviewed as UNCERTAIN were left out")
    return parts


def write_retrain_card(folder: Path, config, sources: dict, data_summary: dict | None,
                       parent: RegisteredModel | None, comparison: dict | None) -> Path:
    """Write the card of the model folder ``folder`` trained with ``config`` (a TrainConfig) on ``sources``
    (``PreparedData.sources``); ``parent`` is the model that was active (and fine-tuned, with init "model");
    ``comparison`` is ``compare_models``' result, or None when there was none."""
    from training.card import CNMC_SOURCE, DEFAULT_LIMITATIONS, write_model_card

    parts = data_description(sources)
    reviewed = sources.get("reviewed")
    sections = {"Retraining in leukviewer": "\n".join([
        f"- Data: {'; '.join(parts) or config.data}",
        f"- Started from: {config.init}" + (
            f" (parent model {parent.display_name}, SHA-256 {parent.sha256}, {config.parent_model})"
            if config.parent_model and parent else ""),
        f"- Validation by subject: {'yes' if config.split == 'subject' else 'NO (image-level split)'}",
    ])}
    comparison = comparison or {}
    if comparison.get("new"):
        new, active = comparison["new"], comparison.get("active")
        rows = ["| metric | new model | previously active model |", "|---|---|---|"]
        for key, label in METRIC_ROWS:
            rows.append(f"| {label} | {format_value(new.get(key))} | "
                        f"{format_value(active.get(key)) if active else 'n/a'} |")
        note = ""
        if active and active.get("warning"):
            note = f"\n\nPreviously active model: {active['warning']}."
        sections["Comparison with the previously active model"] = (
            f"Both models on the new model's held-out test subjects ({', '.join(comparison['subjects'])}); "
            f"previously active model: {parent.display_name if parent else 'none'}"
            f" (SHA-256 {parent.sha256[:12] if parent else ''}…).\n\n" + "\n".join(rows) + note)
    elif comparison.get("error"):
        sections["Comparison with the previously active model"] = comparison["error"]
    limitations = list(DEFAULT_LIMITATIONS)
    if reviewed and reviewed.get("images"):
        limitations.append("Cells from this lab's cases carry the labels one reviewer gave in leukviewer; "
                           "they are not confirmed by flow cytometry or a second reviewer.")
    cnmc = sources.get("folder") and not (reviewed and reviewed.get("images")) and (
        (data_summary or {}).get("layout") == "cnmc")
    return write_model_card(folder, data_source=CNMC_SOURCE if cnmc else "; ".join(parts) or None,
                            limitations=limitations, extra_sections=sections)
