"""One model thread for the whole server: requests wait in a bounded queue and are merged.

The page and the REST API both submit here, so every forward pass is one batch of
whatever arrived within a few milliseconds, and a full queue is shed with a 503.
"""

import concurrent.futures
import dataclasses
import queue
import threading
import time

import numpy as np

from faceexpr_tf.serving import translators
from faceexpr_tf.web import predict_json


@dataclasses.dataclass
class _Job:
  images: np.ndarray       # float32 [n, S, S, C] in [-1, 1]
  labels: np.ndarray       # float32 [n, K]
  future: concurrent.futures.Future
  gain: np.ndarray | None = None   # float32 [n]: factors on G's edit (intensity.edit_gain)


class Batcher:
  """One thread runs the model; requests wait in a bounded queue and are merged.

  The thread takes the oldest job, then any others that arrive within max_wait_s, up to
  max_batch images, and runs them as one forward pass. submit() raises RequestError
  (503) when max_queue jobs are already waiting: load is shed, never queued unbounded.
  """

  def __init__(self, translator: translators.Translator, max_batch: int = 64,
               max_wait_s: float = 0.005, max_queue: int = 256):
    self.translator = translator
    self.max_batch = max_batch
    self.max_wait_s = max_wait_s
    self._queue = queue.Queue(max_queue)
    self.batches = 0
    self.examples = 0
    self._closed = threading.Event()
    if hasattr(translator, "compile_forward"):  # Keras: a tf.function, traced here
      translator.compile_forward()
      k, shape = translator.num_classes, (translator.image_size, translator.image_size,
                                          translator.channels)
      # With an edit gain, an intensity below 1 sends each row's gain: its own trace, warmed
      # too (a G without one never gets gains: intensity.edit_gain is None).
      gained = translator.generator.edit_gain is not None
      for n in (1, 2):  # after two shapes the trace takes any batch size
        x, labels = np.zeros((n,) + shape, np.float32), np.eye(k, dtype=np.float32)[[0] * n]
        translator.forward_labels(x, labels)
        if gained:
          translator.forward_labels(x, labels, np.ones(n, np.float32))
    self._thread = threading.Thread(target=self._loop, name="faceexpr-model", daemon=True)
    self._thread.start()

  @property
  def waiting(self) -> int:
    return self._queue.qsize()

  def submit(self, images: np.ndarray, labels: np.ndarray, gain=None
             ) -> concurrent.futures.Future:
    if self._closed.is_set():
      raise predict_json.RequestError("the server is shutting down", 503)
    job = _Job(np.asarray(images, np.float32), np.asarray(labels, np.float32),
               concurrent.futures.Future(),
               None if gain is None else np.asarray(gain, np.float32).reshape(-1))
    try:
      self._queue.put_nowait(job)
    except queue.Full:
      raise predict_json.RequestError(f"server busy: {self._queue.maxsize} requests "
                                      "already waiting; retry later", 503) from None
    return job.future

  def run(self, images: np.ndarray, labels: np.ndarray, gain=None, timeout: float = 120.0
          ) -> np.ndarray:
    """Blocking: float [-1, 1] images and label vectors (and optionally each row's gain,
    Translator.translate_labels) -> G's float output."""
    try:
      return self.submit(images, labels, gain).result(timeout)
    except concurrent.futures.TimeoutError:
      raise predict_json.RequestError(f"the model did not answer within {timeout:.0f} s",
                                      503) from None

  def close(self):
    self._closed.set()
    self._thread.join(timeout=5)

  def _take(self) -> list[_Job]:
    jobs = [self._queue.get(timeout=0.2)]
    count = len(jobs[0].images)
    deadline = time.monotonic() + self.max_wait_s
    while count < self.max_batch:
      try:
        job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
      except queue.Empty:
        break
      jobs.append(job)
      count += len(job.images)
    return jobs

  def _loop(self):
    while not self._closed.is_set():
      try:
        jobs = self._take()
      except queue.Empty:
        continue
      try:
        labels = np.concatenate([j.labels for j in jobs])
        # Jobs with gains merge with jobs without: theirs are what their labels imply.
        gain = None if all(j.gain is None for j in jobs) else np.concatenate([
            self.translator.label_gain(j.labels) if j.gain is None else j.gain
            for j in jobs])
        out = self.translator.forward_labels(np.concatenate([j.images for j in jobs]),
                                             labels, gain)
      except Exception as e:  # pylint: disable=broad-except  (answered, never kills the thread)
        for job in jobs:
          job.future.set_exception(e)
        continue
      self.batches += 1
      self.examples += len(out)
      start = 0
      for job in jobs:
        job.future.set_result(out[start:start + len(job.images)])
        start += len(job.images)
