"""MediaPipe selfie segmentation (Apache-2.0) as a registered trimap-free model: a portrait prior.

The network is an interpreted graph: `SelfieConfig.graph` holds the JSON op list that
`mattekit.selfie.convert_tflite` produced from MediaPipe's .tflite (slots are TFLite tensor indices,
weights live in `self.params`), so the converted file round-trips through the weights registry like
any other model. Ops: conv (incl. depthwise), tconv (MediaPipe's Convolution2DTransposeBias), avgpool,
mean (spatial), add, mul, resize (TFLite RESIZE_BILINEAR flags, as fixed interpolation matrices), hardswish, sigmoid,
relu. Shapes are static (the TFLite input size), so `predict` resizes the image to it and back.

`forward(image)`: image (N,3,H0,W0) in [0,1] (MediaPipe feeds RGB in [0,1], stretched, no letterbox)
-> person probability (N,1,H0,W0) in [0,1]. The default config is the general model's topology
(256x256) with untrained weights; load real weights with `load_weights("selfie")` after
`mattekit.selfie.fetch_selfie()`.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


@dataclass
class SelfieConfig:
    #: JSON graph spec from `mattekit.selfie.convert_tflite` ("" = the general 256x256 model's topology).
    graph: str = ""


_ACTS: dict[str | None, Callable[[torch.Tensor], torch.Tensor]] = {
    None: lambda x: x, "relu": F.relu, "relu6": lambda x: x.clamp(0, 6),
    "relu_n1_to_1": lambda x: x.clamp(-1, 1), "tanh": torch.tanh}


def resize_bilinear_matrix(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """(out_size, in_size) float32 matrix M with out = M @ in along one axis, TFLite RESIZE_BILINEAR semantics
    (reference_ops ComputeInterpolationValues: lower index clamped at 0, upper at in-1)."""
    scale = ((in_size - 1) / (out_size - 1) if align_corners and out_size > 1 else in_size / out_size)
    dst = np.arange(out_size, dtype=np.float64)
    src = (dst + 0.5) * scale - 0.5 if half_pixel_centers else dst * scale
    lo = np.maximum(np.floor(src), 0).astype(np.int64)
    hi = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    frac = src - lo
    m = np.zeros((out_size, in_size), np.float64)
    np.add.at(m, (np.arange(out_size), lo), 1 - frac)
    np.add.at(m, (np.arange(out_size), hi), frac)
    return m.astype(np.float32)


resize_matrix = resize_bilinear_matrix


@register_model("selfie", SelfieConfig, task="trimap_free")
class SelfieNet(nn.Module):
    onnx_input_names = ("image",)
    onnx_output_names = ("mask",)
    #: TFLite shapes are static (resize sizes, pool kernels are baked in).
    onnx_dynamic_hw = False
    normalization = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}

    def __init__(self, config: SelfieConfig | None = None):
        super().__init__()
        self.config = config or SelfieConfig()
        spec = json.loads(self.config.graph) if self.config.graph else default_graph()
        self.input_size = tuple(spec["input"])
        self.input_slot = spec["input_slot"]
        self.output_slot = spec["output"]
        self.nodes = spec["nodes"]
        self.params = nn.ParameterDict({k: nn.Parameter(torch.zeros(s)) for k, s in spec["params"].items()})
        for k, p in self.params.items():  # untrained default: small random weights, so outputs vary
            if p.dim() == 4:
                nn.init.kaiming_uniform_(p, a=5 ** 0.5)
        for i, n in enumerate(self.nodes):
            if n["op"] == "resize":  # derived constants, not weights: kept out of the state dict
                for axis in (0, 1):
                    m = resize_matrix(n["in_size"][axis], n["size"][axis], n["align_corners"],
                                      n["half_pixel_centers"])
                    self.register_buffer(f"_resize{i}_{axis}", torch.from_numpy(m), persistent=False)

    def _arg(self, env: dict, a: int | str) -> torch.Tensor:
        return self.params[a] if isinstance(a, str) else env[a]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (N,3,H0,W0) in [0,1] at `input_size` -> mask (N,1,H0,W0) (the graph's output, sigmoid)."""
        env: dict[int, torch.Tensor] = {self.input_slot: image}
        for i, n in enumerate(self.nodes):
            op = n["op"]
            x = self._arg(env, n["in"][0])
            if op == "conv":
                t, b, l, r = n["pad"]
                pad: int | tuple[int, int] = 0
                if t == b and l == r:
                    pad = (t, l)
                else:  # TFLite SAME puts the odd pixel after: asymmetric, so pad explicitly
                    x = F.pad(x, (l, r, t, b))
                y = F.conv2d(x, self.params[n["in"][1]], self.params[n["in"][2]], n["stride"], pad,
                             n["dilation"], n["groups"])
                y = _ACTS[n["act"]](y)
            elif op == "tconv":
                y = F.conv_transpose2d(x, self.params[n["in"][1]], self.params[n["in"][2]], n["stride"])
                (ct, cl), (oh, ow) = n["crop"], n["size"]
                y = y[:, :, ct:ct + oh, cl:cl + ow]
            elif op == "avgpool":
                t, b, l, r = n["pad"]
                if t or b or l or r:  # TFLite averages over valid pixels only: divide by the true count
                    ones = torch.ones_like(x[:1, :1])
                    y = (F.avg_pool2d(F.pad(x, (l, r, t, b)), n["kernel"], n["stride"])
                         / F.avg_pool2d(F.pad(ones, (l, r, t, b)), n["kernel"], n["stride"]))
                else:
                    y = F.avg_pool2d(x, n["kernel"], n["stride"])
                y = _ACTS[n["act"]](y)
            elif op == "mean":  # over H, W, keepdims (TFLite MEAN axes (1, 2))
                y = x.mean(dim=(2, 3), keepdim=True)
            elif op in ("add", "mul"):
                z = self._arg(env, n["in"][1])
                y = _ACTS[n["act"]](x + z if op == "add" else x * z)
            elif op == "resize":
                y = getattr(self, f"_resize{i}_0") @ x @ getattr(self, f"_resize{i}_1").t()
            elif op == "hardswish":
                y = F.hardswish(x)
            elif op == "sigmoid":
                y = torch.sigmoid(x)
            elif op == "relu":
                y = F.relu(x)
            else:
                raise ValueError(f"unknown graph op {op!r}")
            env[n["out"]] = y
        return env[self.output_slot]

    def onnx_example_inputs(self, h: int, w: int) -> tuple[torch.Tensor, ...]:
        p = next(self.parameters())
        return (torch.rand(1, 3, *self.input_size, device=p.device, dtype=p.dtype),)

    def predict(self, image: torch.Tensor, guidance: torch.Tensor | None = None,
                alpha: torch.Tensor | None = None, forward: Callable | None = None) -> torch.Tensor:
        """image (N,3,H,W) sRGB in [0,1], any H, W -> person probability (N,1,H,W) in [0,1].

        Like MediaPipe: the image is stretched to `input_size` (no letterbox) and the mask resized back
        bilinearly; downscaling is antialiased (MediaPipe's warpAffine is not) to avoid aliasing."""
        fwd = forward or self.forward
        h, w = image.shape[-2:]
        x = image
        if (h, w) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False,
                              antialias=h > self.input_size[0] or w > self.input_size[1])
        mask = fwd(x)
        if (h, w) != self.input_size:
            mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)
        return mask.clamp(0, 1)


def encode_graph(graph: dict) -> str:
    """Graph spec -> compact text (zlib + base64 of canonical JSON), for `_DEFAULT_GRAPH`."""
    raw = json.dumps(graph, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_graph(text: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode("".join(text.split()))))


@lru_cache(maxsize=1)
def _default_graph_json() -> str:
    return json.dumps(decode_graph(_DEFAULT_GRAPH))


def default_graph() -> dict:
    """Graph spec of the general selfie model (topology only, no weights): lets `create_model("selfie")`
    build and export without the fetched file. tests/test_selfie.py checks it equals the conversion."""
    return json.loads(_default_graph_json())


#: encode_graph(convert_tflite(selfie_segmentation.tflite of mediapipe 0.10.21)[0]), regenerate with
#: `python -c "from mattekit.selfie import print_default_graph; print_default_graph()"`.
_DEFAULT_GRAPH = """
eNqtWu1u47gOfZf89g+T+p5XGRRFb5udDTaTFGm7e3EH8+5Xpkw5asmuFBT9gBNT1JFoHkrH+rU7
nJ7fXnffvqPzU/67m8o39y/Hc/56nnan89P+JRv82j085m9Ob8fjtHs6HB9eD+dT/h4myI1+XM5v
z9kMlvb526XhPOP9P7v14j+7bHV+3n3bPZ5Pf+dvz0u3Zto9PzyRPUwzeXp5vRye9guiCe9+T7+K
P8Ot/3y4PL38c3j5k13YxWYEmiVEnqF5BVrYoNHPNbTFcYUWuPVlf3zj1rEblV9hxQUNzCusfCHD
AuidMgAJGOA7ZMUWs+1f+8tpf8yfvJ285cYPf/94Pp+Ptb35ZF5Kw9GALC7ziB0P3WlD970hAS8O
PQwjCwQoMbKkIMO5FxnO3P7l8OPn+fBUXYAclwlrGH++1Sggjg4FcRkB2nUo+UIZiusYylDHjvoL
3HHQOo7dcxil6GLqRRaQoaUFkYEVWr5QWAq7aQolaMaMTpqhlDCcEkZLCeO/OFqLw9xf5I6j1nHq
jZZJ0pTYuRdZjMzbVFMs1xSr1RRbGSo7mqCNVgPNGhHaeEWhkmK5pFitpNgwFq3iPEym0tnDUyUM
G4dhUolxXGKcVmIc9MbWgVqWXTdDJa6AjijKMUU5jaKc2wKMOcCopqNzOj4vTTYtgGodzAVnqyTv
6qD7NJbUcDQ+jqqN42rjtGrju6uNn6UH3MMoMg8LIG9WZPlCQWa7kVmlDnonx2XyTqiD3g8PhQjO
M8F5jeB8+mJm9VRsAheboBWbgN0LT1Sf7tBfcZD5NVDNCVxzglZzQq05OdeWHx2g1wEGKcwh9KZf
iF+efoHoMTI9Ro0eYzc9RnEFHofXbpGIMTIxRo0Yo+tG5pT0i16OyxS9kH5xeEUdieMic1zUOC7N
N5TK3MgnoVSmYcJLRHiJCS9phJe6CS9ZNReSG0/WRKvqxKvqpK2qU+xN1hR1gEmc7dSbrDDPX56t
5PMELDGAKjHAbLq3jbO4IITZjqOzBMozOq+iC/3ogpK0MEc5QFO+I6QtzGl8QEv5AljL13Kh6RN4
Q+YurRIIqQswvHcC0hOA9QTQ9YQBQQH0Ugb9ukJd6gIpC8DKAqjKAmzSwr8lMGzawkeMmrwA3TmM
+PU5TKIEsCgBqigB2F3Zsqkse/lxdJ5ARUYXVXSpH13SctjMSoSmfEtKYgPjQttS1sCsZW25UEZk
7C1JnFvl5JOy2LhxrI4gBsYaVKzdwlE21TPEpPEsNkSKlknRqqRosTuLrb6qB2vEeScdoy+Lrf36
LCb5A1j+AFX+ANtf66yoqsO46AGkegCrHqCqHtAve8Cme7zPYodKhKZ8S8piN17fHNU3x/XNqfXN
+VuyOLfKySdlsQtyg+5dG7iv37YBySbgOcBeDbCHL97S03Byj8ynqi4C/cJIRik++UUXWU008QS8
uH3LjfPMShs48CWkx8OP0/3jOYfwksf3x8PxZT9l/jn+cf98+O/+eP+4P73SrdfL2756DfS28P7l
8L/9+8Bf9vRt7SYT5WpmcDI4PtUkn0DgKAc1yuGW9WcmCdjklOtnPsiUGxrKLWNSnvnwWexvnI1A
lMtaDahaDYR+yg0y5YZxyiUlBQIvboO6uO2XUiCqlBtRi2gUGTfKEY1GewTi+PYvUnwixyeq8Yn9
8YlyfGJ3fNBWeBQgVmFAVWEgQe+7FEgybyW5IGYE+ZY028nczkjJNIzUpOU7RloElNXsxrfWJMHk
/+skJjXGKd7ASHnHA5sk00yQqMZAK8d89gofP5VjbpsN8nnK/8tsLBfaq3LT/65clGNwXI5BkmPy
f0anvv3ul2NQlWNQlmNyRFGUY3AWI5q/Vh4BhHl4BoDiw+dLUD1fgtAfH5DjA3b48EtuQ6g4QKAG
CEIvI2VTGZ4cnYwg3xJnO93MSLltw0hNWraMhHmnz4y06Lz5bzwLFx8nRI4yqlHGWzb4eYbQSjOE
4ks7JClm2xisg1JICT/drNw8IZ7mwfGEOHVCujUcRPFEA5rxpDSUlJgYnXq+yPQnpTEaLRmrBNVY
iZWMHFTjtKfA+PEJoPDwORdUz7lg/3kTlA+cYP+Jk42V6MhJdsjw1Pj0nzlB+dAJWjE4C4J8S5pt
S+F5vCw3vpcJWZss65LcaAVtr6n0tUUdK+Nsxz/lkxTZVnusbPp9R9fP68dlKi4PP/NM/uKzn+uR
vPVIKO0VzfJzV49gbhaeLZZfmsn1OGQ1oSpWTKoTUvm/fY939SzhcqTy2kVqXCR2EasFyc/VglTp
9zjo9Nr65n091LZ8ujahU2TVhA6XFZMK1RSolETrIa/l00RGq5NYRhPv6nGs5VN+FqqJxWsTi2yy
9WP9dT/Wcz9xG7Ir85r8XT0atHy67sfZxsSyCUxucnf1oErtxyXuJ22TQspIdUKCyft+fBmywbt6
QINW8FdeQpnaUkTWsxSlNpht6oJrjVw12hDH+bqvOHNfxar4ibbxE63UWUyNoyQ5SqZxlIzkKIXW
KHxEDWsmlc5gzaS2M+BcKn6Ak6nprLy8q44AJEdrPpWIwZpQORbXblJjkj48GbBmVHkyYM2o5sko
b1WqE4wfn4zymqLCNebjk1HeDlQvJghoLVybWPiItskX2PLlqp8mX0DKlyLHVrTOCWj93ATJz1KQ
vGmNpMemyGAVcpgZ8nUkg2tsKt1cYQ6pMUmCSWy8RMlLbLzE6qUyUtkjM8OWrTMx7OakbBzZpOwn
35Fw2b1tJgJPY1MvECQv0HgB+6GklNVztUDJCbrGxEkmqTFJgolpvBjJi2m8mPQRrV3Hc1er/2pA
dfz3/wEktxAw
"""
