"""leukviewer: a review station for blood smears that flags leukemic blasts (ALL) for a hematologist's review.

For Research Use Only. Not for use in diagnostic procedures.
"""
__version__ = "0.1.0"

RUO_NOTICE = "For Research Use Only. Not for use in diagnostic procedures."
