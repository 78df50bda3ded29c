"""The benchmark workloads: transposed convolutions that real models run.

Each workload has two sizes: ``cpu`` (small enough for a 2-core CPU) and ``gpu`` (the size
the model really uses). Kernels are in Keras layout ``(*k, C_out // groups, C_in)``, data
channels-last. ``padding`` is either a Keras string (``"same"``/``"valid"``) or a
PyTorch-style int ``p`` per dimension (crop ``p`` at both ends), with ``output_padding`` the
PyTorch ``output_padding``. No jax import here: the table is plain data.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["Size", "Workload", "WORKLOADS", "QUICK", "get_workloads"]


@dataclasses.dataclass(frozen=True)
class Size:
    """Problem size: batch, input spatial shape, input and output channels."""

    batch: int
    spatial: tuple[int, ...]
    c_in: int
    c_out: int


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    Attributes:
      name: short identifier used on the command line.
      cpu: size for CPU runs.
      gpu: size for GPU runs (the model's real size where it fits one device).
      kernel: kernel spatial shape.
      strides: stride per spatial dimension.
      padding: ``"same"``/``"valid"`` (Keras) or an int / ints (PyTorch ``padding``).
      output_padding: PyTorch ``output_padding`` (None for Keras's default).
      groups: channel groups.
      dilation: kernel dilation per spatial dimension.
      dtype: dtype of CPU runs.
      gpu_dtypes: dtypes of GPU runs.
      per_example: vmap the op over ``(x, K)`` pairs, one kernel per example
        (``batch`` pairs of a batch-1 input), instead of one shared kernel.
      note: what the workload stands for.
      lax_cpu_skip: if set, why the lax-autodiff baseline is not run on CPU.
      layers: also a workload of the layers section (``jaxconvt.bench.layers``): a
        training step of each framework's layer against jaxconvt's drop-in at this shape.
    """

    name: str
    cpu: Size
    gpu: Size
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str | int | tuple[int, ...]
    output_padding: int | tuple[int, ...] | None = None
    groups: int = 1
    dilation: tuple[int, ...] | None = None
    dtype: str = "float32"
    gpu_dtypes: tuple[str, ...] = ("float32", "bfloat16")
    per_example: bool = False
    note: str = ""
    lax_cpu_skip: str = ""
    layers: bool = False

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    def size(self, sizes: str) -> Size:
        """The ``"cpu"`` or ``"gpu"`` size."""
        if sizes not in ("cpu", "gpu"):
            raise ValueError(f"`sizes` must be 'cpu' or 'gpu'; got {sizes!r}.")
        return self.cpu if sizes == "cpu" else self.gpu

    def conv_kwargs(self) -> dict:
        """Keyword arguments of ``jaxconvt.conv_transpose`` (besides the operands)."""
        return dict(
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation_rate=self.dilation or (1,) * self.ndim,
            groups=self.groups,
        )

    def useful_flops(self, size: Size) -> int:
        """Flops of the non-zero multiply-adds of one pass (forward, dx or dK alike).

        ``2 * N * prod(input spatial) * C_in * (C_out / groups) * prod(k)``.
        """
        return (
            2 * size.batch * math.prod(size.spatial) * size.c_in * (size.c_out // self.groups) * math.prod(self.kernel)
        )


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "dcgan2d",
        cpu=Size(16, (16, 16), 256, 128),
        gpu=Size(128, (16, 16), 256, 128),
        kernel=(4, 4),
        strides=(2, 2),
        padding=1,
        note="DCGAN generator block, k4 s2 p1 (= Keras 'same')",
        layers=True,
    ),
    Workload(
        "unet2d",
        cpu=Size(2, (32, 32), 256, 128),
        gpu=Size(1, (28, 28), 1024, 512),
        kernel=(2, 2),
        strides=(2, 2),
        padding="valid",
        note="U-Net 2x2 up-conv (GPU: the original U-Net's first, 28x28x1024 -> 56x56x512)",
    ),
    Workload(
        "hifigan1d",
        cpu=Size(4, (256,), 512, 256),
        gpu=Size(16, (32,), 512, 256),
        kernel=(16,),
        strides=(8,),
        padding=4,
        note="HiFi-GAN V1 first upsampler k16 s8 p4 (GPU: a training segment, 32 frames -> 8192 samples)",
        layers=True,
    ),
    Workload(
        "unet3d",
        cpu=Size(1, (16, 16, 16), 64, 32),
        gpu=Size(2, (16, 160, 160), 320, 160),
        kernel=(2, 2, 2),
        strides=(2, 2, 2),
        padding="valid",
        note="3-D U-Net / nnU-Net 2x2x2 up-conv",
        layers=True,
    ),
    Workload(
        "unet3d_aniso",
        cpu=Size(1, (16, 16, 16), 64, 32),
        gpu=Size(2, (16, 160, 160), 320, 160),
        kernel=(1, 2, 2),
        strides=(1, 2, 2),
        padding="valid",
        note="nnU-Net anisotropic (1, 2, 2) up-conv",
    ),
    Workload(
        "vae3d_k3",
        cpu=Size(1, (16, 16, 16), 32, 32),
        gpu=Size(1, (64, 64, 32), 64, 1),
        kernel=(3, 3, 3),
        strides=(2, 2, 2),
        padding=1,
        output_padding=1,
        gpu_dtypes=("bfloat16", "float32"),
        note="3-D VAE decoder k3 s2 p1 op1",
    ),
    Workload(
        "grouped2d",
        cpu=Size(8, (16, 16), 128, 128),
        gpu=Size(8, (16, 16), 128, 128),
        kernel=(3, 3),
        strides=(2, 2),
        padding=1,
        output_padding=1,
        groups=8,
        note="grouped up-conv, 8 groups, k3 s2 p1 op1",
    ),
    Workload(
        "per_example",
        cpu=Size(8, (16, 16), 64, 64),
        gpu=Size(8, (16, 16), 64, 64),
        kernel=(4, 4),
        strides=(2, 2),
        padding="same",
        per_example=True,
        note="vmap over per-example kernels (StyleGAN2 modulated up-conv); torch: grouped conv",
    ),
    Workload(
        "vae2d_bf16",
        cpu=Size(1, (128, 128), 512, 256),
        gpu=Size(1, (128, 128), 512, 256),
        kernel=(3, 3),
        strides=(2, 2),
        padding=1,
        output_padding=1,
        dtype="bfloat16",
        gpu_dtypes=("bfloat16", "float32"),
        note="diffusion VAE decoder layer k3 s2 p1 op1, bfloat16",
        lax_cpu_skip="its kernel gradient takes minutes per call (10 s at 32x32, 73 s at 64x64; "
        "it grows faster than the image)",
    ),
    Workload(
        "audio_vae",
        cpu=Size(2, (64,), 2048, 1024),
        gpu=Size(2, (64,), 2048, 1024),
        kernel=(20,),
        strides=(10,),
        padding=5,
        note="large-stride 1-D upsampler k20 s10 p5",
    ),
    Workload(
        "istft",
        cpu=Size(16, (400,), 129, 1),
        gpu=Size(16, (400,), 129, 1),
        kernel=(256,),
        strides=(64,),
        padding="valid",
        note="learned inverse STFT: k256 s64, 129 -> 1 channels",
    ),
    Workload(
        "extreme",
        cpu=Size(1, (8, 8), 128, 32),
        gpu=Size(1, (8, 8), 128, 32),
        kernel=(32, 32),
        strides=(16, 16),
        padding="valid",
        note="k32 s16: compile time was minutes in older XLA",
    ),
    Workload(
        "bigvgan",
        cpu=Size(2, (128,), 256, 128),
        gpu=Size(2, (128,), 256, 128),
        kernel=(11,),
        strides=(5,),
        padding=3,
        note="k11 s5 p3: k not divisible by s, phase sub-kernels of unequal size",
    ),
)
"""Every workload, in the order of the reports."""

QUICK: tuple[str, ...] = ("dcgan2d", "unet2d", "hifigan1d", "unet3d", "grouped2d", "per_example", "bigvgan")
"""The subset ``--quick`` runs: about a minute on a 2-core CPU."""


def get_workloads(names=None) -> list[Workload]:
    """Workloads by name (all when ``names`` is None), in table order."""
    table = {w.name: w for w in WORKLOADS}
    if names is None:
        return list(WORKLOADS)
    names = list(names)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {sorted(table)}.")
    return [table[n] for n in names]
