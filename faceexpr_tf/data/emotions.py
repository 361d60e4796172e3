"""Emotion names <-> FER2013 label ids <-> the model's contiguous class ids."""

from collections.abc import Iterable, Sequence

from faceexpr_tf import errors

# FER2013's `emotion` column: the label id is the index in this tuple.
FER2013_EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
# The paper's four classes; class id = position in this tuple.
DEFAULT_EMOTIONS = ("Angry", "Happy", "Sad", "Surprise")


class UnknownEmotionError(errors.UserError, ValueError):
  pass


def canonical(name: str) -> str:
  """'happy' / ' HAPPY ' -> 'Happy'; raises UnknownEmotionError otherwise."""
  key = str(name).strip().lower()
  for known in FER2013_EMOTIONS:
    if known.lower() == key:
      return known
  raise UnknownEmotionError(
      f"unknown emotion {name!r} (choose from {', '.join(FER2013_EMOTIONS)})")


def parse_emotions(names: str | Iterable[str]) -> tuple[str, ...]:
  """'Angry,Happy' or ['angry', 'happy'] -> ('Angry', 'Happy'), validated, no repeats."""
  if isinstance(names, str):
    names = [n for n in names.split(",") if n.strip()]
  result = tuple(canonical(n) for n in names)
  if not result:
    raise UnknownEmotionError("no emotions given")
  if len(set(result)) != len(result):
    raise UnknownEmotionError(f"emotion listed twice in {', '.join(result)}")
  return result


def fer_id(name: str) -> int:
  return FER2013_EMOTIONS.index(canonical(name))


def fer_to_class_ids(emotions: Sequence[str]) -> dict[int, int]:
  """Maps the FER2013 label ids of `emotions` to class ids 0..K-1 in their order."""
  return {fer_id(name): class_id for class_id, name in enumerate(emotions)}


def class_id(name: str, emotions: Sequence[str]) -> int:
  name = canonical(name)
  if name not in emotions:
    raise UnknownEmotionError(
        f"emotion {name!r} is not one this model knows ({', '.join(emotions)})")
  return list(emotions).index(name)
