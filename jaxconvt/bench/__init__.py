"""``python -m jaxconvt bench``: jaxconvt against lax autodiff and PyTorch on real workloads.

For every workload (:data:`WORKLOADS`) and dtype, three implementations run side by side
in one process on the default device:

* ``jaxconvt`` — :func:`jaxconvt.conv_transpose` with its own derivative rules;
* ``lax`` — what ``keras.ops.conv_transpose`` runs: ``lax.conv_general_dilated`` with
  ``lhs_dilation`` (groups via ``feature_group_count``), differentiated by JAX's own rules;
* ``torch`` — ``torch.nn.functional.conv_transpose{1,2,3}d`` on CPU, or CUDA when the JAX
  device is a GPU (only when torch is installed).

Four stages are timed: ``fwd`` (the op), ``dx`` and ``dk`` (the vector-Jacobian product
with respect to the input or the kernel alone, with a fixed random cotangent ``ct``) and
``fwdbwd`` (the value and both gradients of ``sum(y * ct)``). Each time is the median of
several runs after a warm-up, each run ended by ``jax.block_until_ready`` (or a CUDA
synchronise). JAX stages are compiled ahead of time, which gives the compile time and XLA's
memory analysis (peak = argument + output + temporary bytes). Useful GF/s counts only
non-zero multiply-adds, ``2 * N * prod(input spatial) * C_in * C_out / groups * prod(k)``
per pass (``fwdbwd`` = 3 passes). Speedups are ``other ms / jaxconvt ms`` (> 1: jaxconvt
is faster). Outputs of the three implementations are compared, so a benchmark never times
two different computations.

The roof (``jaxconvt.bench.roof``): for each stage, one bare ``lax.dot_general`` with the
stage's useful multiply-adds in its natural shape (rows = batch x positions, contraction =
taps x C_in/G, columns = C_out/G, batched over the groups) takes its turns with the
implementations in the same run; ``efficiency = stage GF/s / roof GF/s`` (= roof time / stage
time) says how far a lowering is from what XLA does with the same arithmetic.

The layers section (``jaxconvt.bench.layers``): one jitted training step (the value and
the gradients of the input and every parameter) of each framework's own transposed
convolution layer against jaxconvt's drop-in with the same parameters (Flax NNX and Linen,
Equinox, Keras, where installed), on the workloads marked ``layers``.

The package, one concern per module (none imports torch or matplotlib unless it is used):

* ``workloads`` — the workload table (plain data, no jax);
* ``settings`` — the stages, implementations and :class:`Settings`;
* ``problem`` — one workload's spec, shapes and seeded operands;
* ``timing`` — the implementations taking turns in blocks of timed runs;
* ``jax_impls`` — jaxconvt and the lax baseline, compiled ahead of time;
* ``torch_impl`` — the PyTorch baseline;
* ``roof`` — the stages' products and their rates, the efficiencies;
* ``layers`` — the framework layer pairs and the layers section;
* ``machine`` — machine, versions and load average for the record;
* ``progress`` — the progress bar;
* ``suite`` — :func:`run_workload` and :func:`run_suite`, the JSON report;
* ``report`` — text and markdown tables (the layers table too); ``chart`` — the PNG;
* ``cli`` — the ``bench`` subcommand.
"""

from jaxconvt.bench.chart import write_chart as write_chart
from jaxconvt.bench.cli import add_arguments as add_arguments
from jaxconvt.bench.cli import main as main
from jaxconvt.bench.jax_impls import lax_conv_transpose as lax_conv_transpose
from jaxconvt.bench.layers import PAIRS as LAYER_PAIRS
from jaxconvt.bench.layers import LayerPair as LayerPair
from jaxconvt.bench.layers import run_layers as run_layers
from jaxconvt.bench.report import layers_markdown as layers_markdown
from jaxconvt.bench.report import markdown_report as markdown_report
from jaxconvt.bench.report import text_report as text_report
from jaxconvt.bench.report import update_markdown as update_markdown
from jaxconvt.bench.roof import roof_products as roof_products
from jaxconvt.bench.settings import SCHEMA as SCHEMA
from jaxconvt.bench.settings import STAGES as STAGES
from jaxconvt.bench.settings import Settings as Settings
from jaxconvt.bench.suite import run_suite as run_suite
from jaxconvt.bench.suite import run_workload as run_workload
from jaxconvt.bench.workloads import QUICK as QUICK
from jaxconvt.bench.workloads import WORKLOADS as WORKLOADS
from jaxconvt.bench.workloads import Size as Size
from jaxconvt.bench.workloads import Workload as Workload
from jaxconvt.bench.workloads import get_workloads as get_workloads

__all__ = [
    "SCHEMA",
    "STAGES",
    "LAYER_PAIRS",
    "QUICK",
    "WORKLOADS",
    "LayerPair",
    "Settings",
    "Size",
    "Workload",
    "add_arguments",
    "get_workloads",
    "lax_conv_transpose",
    "layers_markdown",
    "main",
    "markdown_report",
    "roof_products",
    "run_layers",
    "run_suite",
    "run_workload",
    "text_report",
    "update_markdown",
    "write_chart",
]
