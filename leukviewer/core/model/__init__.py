"""The model folder and what runs it. The one description of a model (descriptor), which model folder the app uses
(active), which model folders are installed and which one is active (registry), the classifier that reads a model
folder, the inference engines (TensorFlow, LiteRT) and Grad-CAM, and a model's metrics on a labelled folder
(evaluation).

For Research Use Only. Not for use in diagnostic procedures.
"""
