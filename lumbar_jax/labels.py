"""The five structures of the paper (Guo et al. 2022), their colours and reference numbers."""

from __future__ import annotations

# Label values as in the paper; background is 0.
STRUCTURES = (
    "vertebral_body",
    "intervertebral_disc",
    "intervertebral_foramen",
    "spinal_canal",
    "cord_cauda_equina",
)
LABEL_NAMES = ("background", *STRUCTURES)
BODY, DISC, FORAMEN, CANAL, CORD = range(1, len(LABEL_NAMES))
# Overlay colours per label value (background transparent), colour-blind friendly (Okabe-Ito).
LABEL_COLOURS = ("#00000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442")

# Test-set Dice reported by the paper (11 series): (mean, min, max).
PAPER_DICE = {
    "vertebral_body": (0.864, 0.82, 0.90),
    "intervertebral_disc": (0.898, 0.86, 0.92),
    "intervertebral_foramen": (0.670, 0.60, 0.76),
    "spinal_canal": (0.837, 0.76, 0.87),
    "cord_cauda_equina": (0.669, 0.55, 0.90),
}
# The paper's subjective "satisfactory" counts on its test set: (satisfactory, all).
PAPER_SATISFACTORY = {
    "vertebral_body": (429, 440),
    "intervertebral_disc": (558, 570),
    "intervertebral_foramen": (171, 223),
    "spinal_canal": (38, 44),
    "cord_cauda_equina": (22, 28),
}
