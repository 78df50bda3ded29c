"""jaxconvt: exact, fast N-D transposed convolution for JAX."""

from jaxconvt import onnx_compat as onnx_compat
from jaxconvt import torch_compat as torch_compat
from jaxconvt._api import conv_transpose as conv_transpose
from jaxconvt._api import conv_transpose_output_shape as conv_transpose_output_shape

__version__ = "0.1.0"

__all__ = ["conv_transpose", "conv_transpose_output_shape", "onnx_compat", "torch_compat"]
