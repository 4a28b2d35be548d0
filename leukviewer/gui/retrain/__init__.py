"""The retraining wizard (``wizard.py``: the QWizard and the Models menu; ``pages/``: one module per page;
``plots.py``). Its non-GUI logic is ``leukviewer.core.retrain``."""
