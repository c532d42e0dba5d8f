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
# Overlay colours per label value (background transparent), colour-blind friendly (Okabe-Ito).
LABEL_COLOURS = ("#00000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442")
