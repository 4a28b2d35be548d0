"""Everything leukviewer does without a display: image I/O, white-cell localisation, classification through a
model folder, results, review state and reports. Never imports Qt (tests/core/test_no_qt.py proves it)."""
