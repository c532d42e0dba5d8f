"""lumbar_jax: coarse-to-fine 3D U-Net segmentation of lumbar spine structures in JAX/Flax."""

__version__ = "0.1.0"

# Label values, as in the paper (Guo et al. 2022); background is 0.
STRUCTURES = (
    "vertebral_body",
    "intervertebral_disc",
    "intervertebral_foramen",
    "spinal_canal",
    "cord_cauda_equina",
)
LABEL_NAMES = ("background", *STRUCTURES)
