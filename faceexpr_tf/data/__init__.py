"""Faces in: emotion names, image decoding, the FER2013 csv, image folders, synthetic faces,
the tf.data pipeline, and the grids that draw faces.

Floor 2: may import the ground and modeling/ (nothing here does today); never store/,
serving/ or anything above.
"""
