"""StarGAN generator and discriminator (official yunjey/stargan layout), as Keras layers.

Only Keras layers and `keras.ops` here, no `tf.*`: the same networks train under the
TensorFlow backend (this project's train_step) and can be driven by JAX on a GPU box.

Instance normalisation is `GroupNormalization(groups=-1)`: one group per channel is
exactly InstanceNorm2d(affine=True) (tensorflow-addons, which had InstanceNormalization,
does not import under Keras 3).
"""

import dataclasses
import math

import keras
from keras import layers
from keras import ops


# What G's last layer makes: the image itself (official StarGAN), an edit of its input
# (residual), or an edit and a mask saying where it applies (attention, as GANimation).
G_OUTPUTS = ("image", "residual", "attention")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that fixes the shapes of G and D; a run dir refuses a different one."""
  image_size: int = 48
  channels: int = 1
  num_classes: int = 4
  g_conv_dim: int = 64
  g_repeat_num: int = 6          # residual blocks
  d_conv_dim: int = 64
  d_repeat_num: int = 4          # stride-2 layers: 48 -> 3x3 PatchGAN map
  upsample: str = "transpose"    # "transpose" (official) | "resize" (nearest + conv)
  g_output: str = "image"        # one of G_OUTPUTS: image (official) | residual | attention

  def __post_init__(self):
    if self.upsample not in ("transpose", "resize"):
      raise ValueError(f"upsample must be 'transpose' or 'resize', got {self.upsample!r}")
    if self.g_output not in G_OUTPUTS:
      raise ValueError(f"g_output must be one of {', '.join(G_OUTPUTS)}, got "
                       f"{self.g_output!r}")
    if self.image_size % 4:
      raise ValueError(f"image_size must be a multiple of 4 (G downsamples twice), "
                       f"got {self.image_size}")
    if self.image_size % (2 ** self.d_repeat_num):
      raise ValueError(f"image_size {self.image_size} is not divisible by "
                       f"2**d_repeat_num = {2 ** self.d_repeat_num}")

  @property
  def d_kernel_size(self) -> int:
    """Side of D's last feature map, used as the class head's kernel."""
    return self.image_size // 2 ** self.d_repeat_num


def _atanh(x):
  # Clipped so saturated pixels (0 or 255) stay finite and editable; written with log
  # because TFLite has no ATANH builtin.
  x = ops.clip(x, -0.999, 0.999)
  return 0.5 * ops.log((1.0 + x) / (1.0 - x))


def _instance_norm(name):
  return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


@keras.saving.register_keras_serializable(package="faceexpr_tf")
class ResidualBlock(layers.Layer):
  """conv3x3-IN-ReLU-conv3x3-IN plus identity, as official StarGAN."""

  def __init__(self, dim, **kwargs):
    super().__init__(**kwargs)
    self.dim = dim
    self.conv1 = layers.Conv2D(dim, 3, padding="same", use_bias=False, name="conv1")
    self.norm1 = _instance_norm("norm1")
    self.conv2 = layers.Conv2D(dim, 3, padding="same", use_bias=False, name="conv2")
    self.norm2 = _instance_norm("norm2")

  def build(self, input_shape):
    self.conv1.build(input_shape)
    self.norm1.build(input_shape)
    self.conv2.build(input_shape)
    self.norm2.build(input_shape)

  def call(self, x):
    h = ops.relu(self.norm1(self.conv1(x)))
    return x + self.norm2(self.conv2(h))

  def get_config(self):
    return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package="faceexpr_tf")
class Generator(keras.Model):
  """G(x, c): image in [-1, 1] and target one-hot -> image in [-1, 1].

  The one-hot target is tiled over the image and concatenated as extra input channels.

  `g_output="residual"` makes G an edit of its input: out = tanh(atanh(x) + h), with
  the last conv zero-initialised so an untrained G is the identity (the residual-image
  idea of Shen & Liu 2017). Instance norm hides a face's absolute brightness from the
  official G, which must re-learn every unchanged pixel; the residual G gets them for
  free and spends its capacity on what the expression moves. Same weights either way.

  `g_output="attention"` (GANimation's attention-masked G, Pumarola et al. 2018): the last
  conv makes one more channel, a mask A = sigmoid(a) in (0, 1), and the residual colour
  C = tanh(atanh(x) + h); out = A * x + (1 - A) * C, so A = 1 keeps the input's pixel.
  With the last conv zero-initialised C = x, so an untrained G is the identity whatever A
  is. `edit` returns (out, A): training penalises A's edit area and roughness
  (losses.mask_area, losses.total_variation), and the grids show where G edits.

  `edit_gain` (one factor per emotion; None: 1 for all) scales what G changes, after
  training: out = clip(x + g (G(x, c) - x)) with g = c . edit_gain, so a G that under-makes
  one emotion and over-makes another can be set to make each as strongly as real faces
  show it (evaluation/calibrate.py measures the factors). Training never sets it; it
  travels in the .keras file and so into every export. `gain` ([N]) in a call replaces
  the factors a batch's labels imply (photos/intensity.py ramps them with the intensity).
  """

  def __init__(self, config: ModelConfig = ModelConfig(), edit_gain=None, **kwargs):
    kwargs.setdefault("name", "generator")
    super().__init__(**kwargs)
    self.config = config
    self.edit_gain = check_edit_gain(edit_gain, config.num_classes)
    dim = config.g_conv_dim
    blocks = [layers.Conv2D(dim, 7, padding="same", use_bias=False, name="conv_in"),
              _instance_norm("norm_in"), layers.ReLU()]
    for i in range(2):
      blocks += [layers.Conv2D(dim * 2, 4, strides=2, padding="same", use_bias=False,
                               name=f"down{i}"),
                 _instance_norm(f"down{i}_norm"), layers.ReLU()]
      dim *= 2
    blocks += [ResidualBlock(dim, name=f"res{i}") for i in range(config.g_repeat_num)]
    for i in range(2):
      if config.upsample == "transpose":
        blocks.append(layers.Conv2DTranspose(dim // 2, 4, strides=2, padding="same",
                                             use_bias=False, name=f"up{i}"))
      else:
        # Nearest-neighbour resize then conv: no checkerboard artifacts.
        blocks += [layers.UpSampling2D(2, interpolation="nearest"),
                   layers.Conv2D(dim // 2, 3, padding="same", use_bias=False, name=f"up{i}")]
      blocks += [_instance_norm(f"up{i}_norm"), layers.ReLU()]
      dim //= 2
    blocks.append(layers.Conv2D(
        config.channels + (config.g_output == "attention"), 7, padding="same",
        use_bias=False, name="conv_out",
        kernel_initializer="glorot_uniform" if config.g_output == "image" else "zeros"))
    self.blocks = blocks
    # float32 output even under a mixed-precision policy: losses and exports want it.
    self.out_activation = layers.Activation("tanh", dtype="float32", name="tanh")

  def build(self, input_shape=None):
    size, ch, k = self.config.image_size, self.config.channels, self.config.num_classes
    # Run one symbolic pass so every sublayer gets its weights.
    self.call(keras.KerasTensor((None, size, size, ch)), keras.KerasTensor((None, k)))
    self.built = True

  def call(self, images, target_onehot, training=None, gain=None):
    return self.edit(images, target_onehot, training, gain)[0]

  def edit(self, images, target_onehot, training=None, gain=None):
    """(G(x, c), the attention mask A [N, S, S, 1] in (0, 1), or None unless attention).

    gain: [N] factors on each row's edit in place of the ones its label implies
    (intensity.edit_gain brings the edit gain in with the expression)."""
    out, mask = self._network(images, target_onehot, training)
    if gain is None:
      if self.edit_gain is None:
        return out, mask
      gain = ops.sum(ops.cast(target_onehot, "float32") * ops.convert_to_tensor(
          self.edit_gain, "float32"), axis=-1)
    x = ops.cast(images, "float32")
    gain = ops.reshape(ops.cast(gain, "float32"), (-1, 1, 1, 1))
    return ops.clip(x + gain * (out - x), -1.0, 1.0), mask

  def _network(self, images, target_onehot, training=None):
    size = ops.shape(images)[1:3]
    c = ops.cast(target_onehot, images.dtype)[:, None, None, :]
    c = ops.broadcast_to(c, (ops.shape(images)[0], size[0], size[1], ops.shape(c)[-1]))
    h = ops.concatenate([images, c], axis=-1)
    for block in self.blocks:
      h = block(h)
    if self.config.g_output == "image":
      return self.out_activation(h), None
    x = ops.cast(images, "float32")
    h = ops.cast(h, "float32")
    channels = self.config.channels
    colour = self.out_activation(h[..., :channels] + _atanh(x))
    if self.config.g_output == "residual":
      return colour, None
    mask = ops.sigmoid(h[..., channels:])
    return mask * x + (1.0 - mask) * colour, mask

  def get_config(self):
    out = {"config": dataclasses.asdict(self.config), "name": self.name}
    if self.edit_gain is not None:
      out["edit_gain"] = list(self.edit_gain)
    return out

  @classmethod
  def from_config(cls, config):
    return cls(ModelConfig(**config["config"]), edit_gain=config.get("edit_gain"),
               name=config.get("name", "generator"))


@keras.saving.register_keras_serializable(package="faceexpr_tf")
class Discriminator(keras.Model):
  """PatchGAN D(x) -> (real/fake logits [N, s, s, 1], class logits [N, num_classes]).

  conv4x4/2 + LeakyReLU(0.01) repeated, no normalisation (official StarGAN); the class
  head is one conv whose kernel covers the whole last map.
  """

  def __init__(self, config: ModelConfig = ModelConfig(), **kwargs):
    kwargs.setdefault("name", "discriminator")
    super().__init__(**kwargs)
    self.config = config
    dim = config.d_conv_dim
    self.convs = []
    for i in range(config.d_repeat_num):
      self.convs.append(layers.Conv2D(dim, 4, strides=2, padding="same", name=f"conv{i}"))
      dim *= 2
    self.src_head = layers.Conv2D(1, 3, padding="same", use_bias=False, dtype="float32",
                                  name="src")
    self.cls_head = layers.Conv2D(config.num_classes, config.d_kernel_size, padding="valid",
                                  use_bias=False, dtype="float32", name="cls")

  def build(self, input_shape=None):
    size, ch = self.config.image_size, self.config.channels
    self.call(keras.KerasTensor((None, size, size, ch)))
    self.built = True

  def call(self, images, training=None):
    h = images
    for conv in self.convs:
      h = ops.leaky_relu(conv(h), negative_slope=0.01)
    out_src = self.src_head(h)
    out_cls = ops.reshape(self.cls_head(h), (-1, self.config.num_classes))
    return out_src, out_cls

  def get_config(self):
    return {"config": dataclasses.asdict(self.config), "name": self.name}

  @classmethod
  def from_config(cls, config):
    return cls(ModelConfig(**config["config"]), name=config.get("name", "discriminator"))


def check_edit_gain(edit_gain, num_classes: int) -> tuple[float, ...] | None:
  """A generator's edit_gain as a tuple, or None for none (or all 1: the same G).

  Raises ValueError unless it is one finite factor > 0 per class."""
  if edit_gain is None:
    return None
  gain = tuple(float(g) for g in edit_gain)
  if len(gain) != num_classes:
    raise ValueError(f"edit_gain needs one factor per emotion ({num_classes}), got "
                     f"{len(gain)}: {list(gain)}")
  if not all(math.isfinite(g) and g > 0 for g in gain):
    raise ValueError(f"edit_gain factors must be finite and > 0, got {list(gain)}")
  return None if all(g == 1.0 for g in gain) else gain


def with_edit_gain(generator: Generator, edit_gain) -> Generator:
  """A copy of `generator` (same config and weights) with `edit_gain` (None: none)."""
  gained = Generator(generator.config, edit_gain=edit_gain, name=generator.name)
  gained.build()
  gained.set_weights(generator.get_weights())
  return gained


def edit_masks(generator: Generator, images, num_classes: int):
  """Where an attention G edits each face toward each class: 1 - A, float [N, K, S, S, 1]
  in [0, 1] (1: the pixel is G's, 0: the input's); None for other outputs."""
  if getattr(getattr(generator, "config", None), "g_output", None) != "attention":
    return None
  n = ops.shape(images)[0]
  masks = [generator.edit(images, ops.one_hot(ops.full((n,), c, "int32"), num_classes),
                          training=False)[1] for c in range(num_classes)]
  return 1.0 - ops.stack(masks, axis=1)


def expected_generator_params(config: ModelConfig) -> int:
  """Parameter count of official StarGAN's G, by formula (weights + affine IN)."""
  d, c, k = config.g_conv_dim, config.channels, config.num_classes
  n = (c + k) * d * 49 + 2 * d
  n += d * 2 * d * 16 + 2 * 2 * d
  n += 2 * d * 4 * d * 16 + 2 * 4 * d
  n += config.g_repeat_num * 2 * (4 * d * 4 * d * 9 + 2 * 4 * d)
  up_kernel = 16 if config.upsample == "transpose" else 9
  n += 4 * d * 2 * d * up_kernel + 2 * 2 * d
  n += 2 * d * d * up_kernel + 2 * d
  n += d * (c + (config.g_output == "attention")) * 49   # attention: one more, the mask
  return n


def expected_discriminator_params(config: ModelConfig) -> int:
  """Parameter count of official StarGAN's D, by formula."""
  n, in_ch, dim = 0, config.channels, config.d_conv_dim
  for _ in range(config.d_repeat_num):
    n += in_ch * dim * 16 + dim
    in_ch, dim = dim, dim * 2
  n += in_ch * 9 + in_ch * config.num_classes * config.d_kernel_size ** 2
  return n


def build_models(config: ModelConfig) -> tuple[Generator, Discriminator]:
  """Creates and builds G and D (call inside a distribution strategy's scope)."""
  generator, discriminator = Generator(config), Discriminator(config)
  generator.build()
  discriminator.build()
  return generator, discriminator
