"""The hematologist's review of a case. Every confirmation and change, saved after each one, with its audit log.

For Research Use Only. Not for use in diagnostic procedures.
"""
