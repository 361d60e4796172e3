"""The networks and what trains them: G and D, StarGAN's train_step, its losses, DiffAugment.

Floor 1: imports only Keras, TensorFlow and the ground (faceexpr_tf.errors); nothing here
reads files, flags or data sets. G and D are Keras layers and keras.ops only.
"""
