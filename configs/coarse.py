"""Coarse stage: the whole series resized to 16 x 256 x 128 (paper).

Use ``--config=coarse`` (paper scale), ``--config=coarse:cpu`` (``:cpu_full`` is the same) or
``--config=coarse:tiny``.
"""

from configs import common


def get_config(arg: str = ""):
    c = common.paper_config("coarse", (16, 256, 128))
    c = common.apply_size(c, arg)
    if arg in ("cpu", "cpu_full"):
        c.data.input_shape = (16, 96, 48)
    return c
