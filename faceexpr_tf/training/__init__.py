"""The train mode: TrainConfig, fit() epoch by epoch with resume, its callbacks
(checkpoints, samples, scores, progress), devices, precision and distribution strategies.

Floor 5: may import evaluation/ and everything below; a peer of photos/.
"""
