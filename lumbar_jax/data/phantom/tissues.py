"""The phantom's tissues: what each voxel is made of, beyond the five labelled structures.

The phantom draws, beside its image and label map, a tissue map: one id per voxel. Training
can then draw a new image from it for every sample, with a random contrast per tissue
(``data.synthesis = "tissues"``, SynthSeg-style). The tissues that belong to no structure are
the ones that teach the network what is *not* a structure (posterior elements beside bodies,
fat beside foramina), so they are as many and as carefully drawn as the structures' own.

Each entry: (name, the structure label it belongs to, the range of its mean intensity on
T2-weighted series after the automatic window, the tissue it may share a contrast with).
The ranges come from the real series in ``../shared/data/real`` (measured after the 0.5/99.5
percentile window) widened to cover fat-bright TSE, bright or dark marrow, healthy or
degenerated discs and flow voids.
"""

from __future__ import annotations

import numpy as np

from lumbar_jax.labels import BODY, CANAL, CORD, DISC, FORAMEN

TISSUES = (
    # name                    label    T2 mean range   may share the contrast of
    ("air", 0, (0.00, 0.06), None),
    ("skin", 0, (0.15, 0.60), None),
    ("subcutaneous_fat", 0, (0.30, 1.00), None),
    ("muscle", 0, (0.05, 0.30), None),
    ("intermuscular_fat", 0, (0.25, 1.00), "subcutaneous_fat"),
    ("abdominal_viscera", 0, (0.10, 0.45), None),
    ("mesenteric_fat", 0, (0.25, 1.00), "subcutaneous_fat"),
    ("fluid_bowel_bladder", 0, (0.30, 1.00), None),
    ("vessel_flow_void", 0, (0.00, 0.30), None),
    ("epidural_fat", 0, (0.25, 1.00), "subcutaneous_fat"),
    ("posterior_cortex", 0, (0.00, 0.15), "body_cortex_endplate"),
    # Tied to the bodies' marrow often, so that shape, not brightness, tells them apart.
    ("posterior_marrow", 0, (0.05, 0.60), "body_marrow"),
    ("body_marrow", BODY, (0.05, 0.60), None),
    ("body_cortex_endplate", BODY, (0.00, 0.15), None),
    ("outer_annulus", DISC, (0.02, 0.35), None),
    ("inner_annulus", DISC, (0.05, 0.70), None),  # drawn between annulus and nucleus
    ("nucleus", DISC, (0.05, 0.95), None),
    ("degenerate_nucleus", DISC, (0.03, 0.35), None),
    ("herniation", DISC, (0.05, 0.60), "nucleus"),
    ("foraminal_fat", FORAMEN, (0.25, 1.00), "epidural_fat"),
    ("foraminal_root", FORAMEN, (0.05, 0.45), "cauda_equina"),
    ("csf", CANAL, (0.40, 1.00), None),
    ("cord", CORD, (0.08, 0.50), None),
    ("cauda_equina", CORD, (0.08, 0.50), "cord"),
)
NAMES = tuple(t[0] for t in TISSUES)
ID = {name: i for i, name in enumerate(NAMES)}
NUM_TISSUES = len(TISSUES)
LABEL_OF_TISSUE = np.array([t[1] for t in TISSUES], np.uint8)
MEAN_RANGE = np.array([t[2] for t in TISSUES], np.float32)  # (tissues, 2): low, high
TIE_PARENT = np.array([ID[t[3]] if t[3] else i for i, t in enumerate(TISSUES)], np.int32)
