"""The PySide6 review application: a thin layer over leukviewer.core."""
