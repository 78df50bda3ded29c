"""jaxconvt: exact, fast N-D transposed convolution for JAX."""

from jaxconvt._api import conv_transpose as conv_transpose
from jaxconvt._api import conv_transpose_output_shape as conv_transpose_output_shape

__version__ = "0.1.0"

__all__ = ["conv_transpose", "conv_transpose_output_shape"]
