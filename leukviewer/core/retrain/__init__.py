"""Retraining a model on the lab's reviewed cells and/or a labelled folder, without Qt.

``data`` (the reviewed cells as a data set, checks), ``session`` (the files of one retraining and the pending
marker), ``plan`` (the user's choices -> ``training.TrainConfig``), ``run`` (``training.train`` on its own thread),
``estimate`` (measured training time), ``compare`` (new vs active model on held-out subjects), ``card`` (the
retrained model's card), ``accept`` (into the model registry). The wizard (``gui/retrain``) and the headless
``leukviewer retrain`` command both use them.

For Research Use Only. Not for use in diagnostic procedures.
"""
