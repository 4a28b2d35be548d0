"""What a case exports. The PDF, the CSV tables, GeoJSON, the method and limitations text.

For Research Use Only. Not for use in diagnostic procedures.
"""
