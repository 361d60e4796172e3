"""Faces in people's photos: finding and cropping them, the translate mode, intensity.

Floor 5: may import evaluation/ and everything below; a peer of training/.
"""
