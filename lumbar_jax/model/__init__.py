"""Networks. Nothing here knows about training or data."""

from lumbar_jax.model.factory import init_params, make_model, param_shapes
from lumbar_jax.model.unet3d import NORMS, UNet3D, validate_input_shape

__all__ = ["NORMS", "UNet3D", "init_params", "make_model", "param_shapes", "validate_input_shape"]
