"""A reader for dlib's binary serialisation of DNN networks (no dlib needed).

Written from the format dlib's `serialize()` produces (dlib/serialize.h,
dlib/dnn/core.h, layers.h, input.h, loss.h); enough of it to read the
networks dlib ships, chiefly `dlib_face_recognition_resnet_model_v1.dat`.

The primitives:

- integers: one control byte (low 4 bits: how many value bytes follow, bit 7:
  negative), then the magnitude, little-endian;
- floats and doubles: two such integers, mantissa and exponent (value =
  mantissa * 2**exponent), with exponents 32000/32001/32002 for inf/-inf/nan;
  files from before dlib 18.18 wrote decimal text instead (a control byte has
  bits 0x70 clear and ASCII digits never do, which tells them apart);
- bool: the character '0' or '1'; strings: an integer length, then the bytes;
- tensors: version 2 is four integer dims then raw little-endian float32s
  (version 1 wrote every element as a dlib float).

A network is nested C++ templates: `add_loss_layer<LOSS, add_layer<L1,
add_layer<L2, ... add_layer<Ln, INPUT>>>>`, with `add_tag_layer` and
`add_skip_layer` levels in between. Each level writes its version, then its
sub-network, then its own layer. The file therefore starts with the versions
of all levels from the output inwards, then the input layer, then every
layer's parameters from the input outwards. Tag and skip levels write only a
version (1), and their IDs live in the C++ type alone: the reader records them
as `marker` layers and leaves their meaning to whoever knows the network type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Special exponents dlib's float_details uses for non-finite values.
_INF, _NINF, _NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes are not a dlib network this reader understands."""


@dataclass
class Layer:
    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, bn, marker
    version: str = ""  # the tag dlib wrote, e.g. "con_4"; empty for markers
    attrs: dict[str, float | int | bool] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(int(p.size) for p in self.params.values())


@dataclass
class InputLayer:
    kind: str  # e.g. input_rgb_image_sized
    means: tuple[float, ...] = ()  # per channel, R G B, subtracted before / 256
    size: tuple[int, int] | None = None  # rows, cols for the *_sized inputs


@dataclass
class DlibNet:
    loss: str
    loss_attrs: dict[str, float]
    input: InputLayer
    layers: list[Layer]  # from the input outwards; markers where tag/skip levels are

    @property
    def compute_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind != "marker"]

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)


class Reader:
    """A cursor over dlib-serialised bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (+{n})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("unexpected end of data")
        return self.data[self.pos]

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {char!r} at byte {self.pos - 1}")
        return char == b"1"

    def str(self) -> str:
        length = self.int()
        if not 0 <= length <= 1 << 20:
            raise DlibFormatError(f"implausible string length {length} at {self.pos}")
        return self._take(length).decode("latin-1")

    def float(self) -> float:
        if self.peek() & 0x70:  # ASCII: the pre-18.18 text format
            return self._old_float()
        mantissa, exponent = self.int(), self.int()
        if exponent == _INF:
            return math.inf
        if exponent == _NINF:
            return -math.inf
        if exponent == _NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def _old_float(self) -> float:
        # Text then one space; "inf", "-inf" and "nan" spelled out.
        end = self.data.index(b" ", self.pos)
        text = self._take(end - self.pos).decode("ascii")
        self._take(1)
        return float(text)

    def tensor(self) -> np.ndarray:
        version = self.int()
        dims = tuple(self.int() for _ in range(4))
        count = math.prod(dims)
        if version == 2:
            raw = self._take(4 * count)
            return np.frombuffer(raw, "<f4").astype(np.float32).reshape(dims)
        if version == 1:
            values = [self.float() for _ in range(count)]
            return np.asarray(values, np.float32).reshape(dims)
        raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")

    def alias_dims(self) -> tuple[int, ...]:
        version = self.int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version} at {self.pos}")
        return tuple(self.int() for _ in range(4))

    def expect_version(self, allowed: tuple[str, ...]) -> str:
        version = self.str()
        if version not in allowed:
            raise DlibFormatError(f"expected one of {allowed}, found {version!r}")
        return version


# --- layer details ------------------------------------------------------------------------


def _multipliers(r: Reader, names: tuple[str, ...]) -> dict[str, float | int | bool]:
    return {name: r.float() for name in names}


_LR = (
    "learning_rate_multiplier",
    "weight_decay_multiplier",
    "bias_learning_rate_multiplier",
    "bias_weight_decay_multiplier",
)


def _con(r: Reader, version: str) -> Layer:
    params = r.tensor()
    attrs: dict[str, float | int | bool] = {}
    for name in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
        attrs[name] = r.int()
    filters = r.alias_dims()
    biases = r.alias_dims()
    attrs |= _multipliers(r, _LR)
    attrs["use_bias"] = r.bool() if version == "con_5" else True
    n_weights = math.prod(filters)
    flat = params.ravel()
    out = {"weight": flat[:n_weights].reshape(filters)}
    if attrs["use_bias"] and flat.size > n_weights:
        out["bias"] = flat[n_weights : n_weights + math.prod(biases)].copy()
    return Layer("con", version, attrs, out)


def _affine(r: Reader, version: str) -> Layer:
    params = r.tensor()
    gamma = r.alias_dims()
    r.alias_dims()  # beta: same dims as gamma, stored right after it
    mode = r.int()  # 0: CONV_MODE (per channel), 1: FC_MODE (per element)
    disabled = r.bool() if version == "affine_2" else False
    n = math.prod(gamma)
    flat = params.ravel()
    out = {"gamma": flat[:n].copy(), "beta": flat[n : 2 * n].copy()}
    return Layer("affine", version, {"mode": mode, "disabled": disabled}, out)


def _bn(r: Reader, version: str) -> Layer:
    # Training-time batch norm; folded into an affine layer by the converter.
    params = r.tensor()
    gamma = r.alias_dims()
    r.alias_dims()
    r.tensor()  # means of the last mini-batch
    r.tensor()  # invstds of the last mini-batch
    running_means = r.tensor().ravel()
    running_variances = r.tensor().ravel()
    attrs: dict[str, float | int | bool] = {
        "num_updates": r.int(),
        "running_stats_window_size": r.int(),
    }
    if version.endswith("2"):
        attrs |= _multipliers(r, _LR)
        attrs["eps"] = r.float()
    else:
        attrs["eps"] = 1e-5  # what dlib assumed before it stored eps
    n = math.prod(gamma)
    flat = params.ravel()
    out = {
        "gamma": flat[:n].copy(),
        "beta": flat[n : 2 * n].copy(),
        "running_mean": running_means.copy(),
        "running_variance": running_variances.copy(),
    }
    return Layer("bn", version, attrs, out)


def _pool(kind: str) -> Callable[[Reader, str], Layer]:
    def read(r: Reader, version: str) -> Layer:
        names = ("nr", "nc", "stride_y", "stride_x")
        if version.endswith("2"):
            names += ("padding_y", "padding_x")
        attrs: dict[str, float | int | bool] = {name: r.int() for name in names}
        attrs.setdefault("padding_y", 0)
        attrs.setdefault("padding_x", 0)
        return Layer(kind, version, attrs)

    return read


def _fc(r: Reader, version: str) -> Layer:
    attrs: dict[str, float | int | bool] = {"num_outputs": r.int(), "num_inputs": r.int()}
    params = r.tensor()
    weight_dims = r.alias_dims()
    r.alias_dims()  # biases
    attrs["bias_mode"] = r.int()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    attrs |= _multipliers(r, _LR)
    if version == "fc_3":
        attrs["use_bias"] = r.bool()
    n_in, n_out = weight_dims[0], weight_dims[1]
    flat = params.ravel()
    # Weights are num_inputs x num_outputs, row-major: y = x @ W (+ b).
    out = {"weight": flat[: n_in * n_out].reshape(n_in, n_out).copy()}
    if attrs["bias_mode"] == 0 and flat.size > n_in * n_out:
        out["bias"] = flat[n_in * n_out : n_in * n_out + n_out].copy()
    return Layer("fc", version, attrs, out)


def _plain(kind: str) -> Callable[[Reader, str], Layer]:
    return lambda r, version: Layer(kind, version)


_DETAILS: dict[str, Callable[[Reader, str], Layer]] = {
    "con_4": _con,
    "con_5": _con,
    "affine_": _affine,
    "affine_2": _affine,
    "bn_con2": _bn,
    "bn_fc2": _bn,
    "relu_": _plain("relu"),
    "relu_2": _plain("relu"),
    "add_prev_": _plain("add_prev"),
    "max_pool_": _pool("max_pool"),
    "max_pool_2": _pool("max_pool"),
    "avg_pool_": _pool("avg_pool"),
    "avg_pool_2": _pool("avg_pool"),
    "fc_2": _fc,
    "fc_3": _fc,
}


def _details(r: Reader) -> Layer:
    version = r.str()
    reader = _DETAILS.get(version)
    if reader is None:
        raise DlibFormatError(f"layer type {version!r} is not supported by this reader")
    layer = reader(r, version)
    if layer.kind == "relu" and version == "relu_2":
        layer.attrs["disabled"] = r.bool()
    return layer


# --- network structure -------------------------------------------------------------------


def _input_layer(r: Reader) -> InputLayer:
    kind = r.str()
    if kind in ("input_rgb_image_sized", "input_rgb_image"):
        means = (r.float(), r.float(), r.float())
        size = (r.int(), r.int()) if kind.endswith("_sized") else None
        return InputLayer(kind, means, size)
    raise DlibFormatError(f"input layer {kind!r} is not supported by this reader")


def _add_layer_tail(r: Reader, version: int) -> None:
    """What an add_layer writes after its layer: training state, discarded here."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, ..._disabled
        r.bool()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final at the bottom)
        r.tensor()
    if version == 3:  # the bottom level also writes _sample_expansion_factor
        r.int()


def read_net(data: bytes) -> DlibNet:
    """Parse a serialised `add_loss_layer<...>` network."""
    r = Reader(data)
    if r.int() != 1:
        raise DlibFormatError("not a dlib network: add_loss_layer version is not 1")
    loss = r.str()
    loss_attrs: dict[str, float] = {}
    if loss == "loss_metric_2":
        loss_attrs = {"margin": r.float(), "dist_thresh": r.float()}
    elif loss not in ("loss_metric_", "loss_multiclass_log_"):
        raise DlibFormatError(f"loss layer {loss!r} is not supported by this reader")
    # Versions of every level, outermost first: 2 = add_layer, 1 = tag or skip,
    # 3 = the add_layer that holds the input layer (and ends the nesting).
    levels: list[int] = []
    while not levels or levels[-1] != 3:
        version = r.int()
        if version not in (1, 2, 3):
            raise DlibFormatError(f"unexpected level version {version} at byte {r.pos}")
        levels.append(version)
    net_input = _input_layer(r)
    layers: list[Layer] = []
    for version in reversed(levels):
        if version == 1:
            layers.append(Layer("marker"))
            continue
        layers.append(_details(r))
        _add_layer_tail(r, version)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} trailing bytes after the network")
    return DlibNet(loss, loss_attrs, net_input, layers)


def read_net_file(path: Path) -> DlibNet:
    return read_net(path.read_bytes())


def fold_batch_norm(layer: Layer) -> Layer:
    """A bn layer as the affine layer dlib's inference networks use in its place."""
    if layer.kind != "bn":
        return layer
    eps = float(layer.attrs["eps"])
    scale = layer.params["gamma"] / np.sqrt(layer.params["running_variance"] + eps)
    shift = layer.params["beta"] - scale * layer.params["running_mean"]
    mode = 0 if layer.version == "bn_con2" else 1  # CONV_MODE is 0
    params = {"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)}
    return Layer("affine", "affine_", {"mode": mode, "disabled": False}, params)
