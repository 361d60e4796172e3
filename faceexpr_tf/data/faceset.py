"""FaceSet: gray faces with their class ids, the type every data source returns.

Also the data package's error (DataError) and the facts all sources share: FER2013's
48 px frame and the three splits.
"""

import dataclasses

import numpy as np

from faceexpr_tf import errors

FER_SIZE = 48
SPLITS = ("train", "validation", "test")


class DataError(errors.UserError):
  """A problem with input data, as one line meant for the user.

  E.g. "data/fer2013.csv line 17: 'pixels' has 2303 values, expected 2304".
  Callers print str(e) without a traceback.
  """


@dataclasses.dataclass
class FaceSet:
  """Grayscale face images with their class ids."""
  images: np.ndarray  # uint8 [N, H, W, 1]
  labels: np.ndarray  # int32 [N], class ids 0..K-1 = index into `emotions`
  emotions: tuple[str, ...]
  source: str  # Human-readable origin, e.g. "fer2013.csv (Training)".
  identities: np.ndarray | None = None  # int32 [N] for synthetic data.

  def __post_init__(self):
    self.emotions = tuple(self.emotions)
    if self.images.ndim != 4 or self.images.shape[-1] != 1:
      raise ValueError(f"images must be [N, H, W, 1], got {self.images.shape}")
    if self.labels.shape != (self.images.shape[0],):
      raise ValueError(f"{self.labels.shape[0]} labels for "
                       f"{self.images.shape[0]} images")

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def class_counts(self) -> dict[str, int]:
    counts = np.bincount(self.labels, minlength=len(self.emotions))
    return {name: int(c) for name, c in zip(self.emotions, counts)}

  def subset(self, index) -> "FaceSet":
    """The images selected by `index` (slice, int array or boolean mask)."""
    return FaceSet(
        images=self.images[index],
        labels=self.labels[index],
        emotions=self.emotions,
        source=self.source,
        identities=(None if self.identities is None
                    else self.identities[index]),
    )

