"""lumbar_jax: coarse-to-fine 3D U-Net segmentation of lumbar spine structures in JAX/Flax.

The packages follow the pipeline: ``data`` -> ``model`` -> ``training`` -> ``inference`` ->
``evaluation`` -> ``export``, with the commands in ``cli``; ``labels``, ``config``, ``files``
and ``checkpoint`` are shared by all of them.
"""

__version__ = "0.2.0"
