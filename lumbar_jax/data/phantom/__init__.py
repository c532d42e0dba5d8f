"""The built-in phantom: synthetic sagittal T2 lumbar series with the five structures labelled.

``spine`` (bodies and discs) -> ``pathology`` -> ``anatomy`` (one patient, drawn per sagittal
plane) -> ``render`` (one acquired series) -> ``dataset`` (a cached nnU-Net raw dataset);
``preview`` draws PNGs of cases.
"""
