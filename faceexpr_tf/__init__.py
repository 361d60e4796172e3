"""faceexpr-tf: StarGAN for facial expressions on Keras 3 / TensorFlow."""

__version__ = "0.1.0"
