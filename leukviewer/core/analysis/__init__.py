"""From a field to its cells. Image reading, white-cell localisation, physical scale, the analysis pipeline,
per-image results, the results store and the case.

For Research Use Only. Not for use in diagnostic procedures.
"""
