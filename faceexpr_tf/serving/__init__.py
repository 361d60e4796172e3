"""G leaves the run: loading any saved form of it (run dir, .keras, SavedModel, .tflite),
the shipped generator, the SavedModel's signatures, export and TFLite conversion, and
the TF Serving client.

Floor 3: may import modeling/, data/, store/ and the ground.
"""
