"""The main window's views: layout only; the window wires them to the case and the workers."""
