"""Values shared by the coarse and fine stages; most come from the paper (Guo et al. 2022)."""

import ml_collections

NUM_CLASSES = 6  # background + the five structures of PAPER.md


def paper_config(stage: str, input_shape: tuple[int, int, int]) -> ml_collections.ConfigDict:
    """The paper's training recipe for one stage of the cascade."""
    c = ml_collections.ConfigDict()
    c.stage = stage
    c.seed = 0
    # Data parallel over all devices: "mesh" (jit over a device Mesh) or "pmap".
    c.parallel = "mesh"
    # Fine-tuning: a run folder or checkpoint whose parameters start this run (its best, else
    # its latest; the optimizer starts afresh). Empty: initialised at random.
    c.init_from = ""
    c.data = data_config(input_shape)
    c.aug = augmentation_config()
    c.model = model_config()
    c.loss = ml_collections.ConfigDict()
    c.loss.ce_weight = 1.0
    c.loss.dice_weight = 1.0
    # Not in the paper: cross-entropy weight per class (background first); empty: all 1.
    c.loss.class_weights = ()

    # Paper: Adam, learning rate 1e-4, batch size 5, 400 epochs.
    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-4
    c.optim.batch_size = 5
    c.optim.num_epochs = 400
    # Not in the paper: a learning-rate schedule ("constant" is the paper's), after a linear
    # warm-up of this many epochs; "cosine" decays to final_lr_fraction of the peak.
    c.optim.schedule = "constant"
    c.optim.warmup_epochs = 0.0
    c.optim.final_lr_fraction = 0.0
    c.train = train_config()
    c.synthesis = synthesis_config()
    # How the cascade turns the fine stage's probabilities into labels: the background's
    # probability times this before the argmax (inference/cascade.decide); 1: the argmax.
    # One value for every structure, or five, one per structure in label order.
    c.inference = ml_collections.ConfigDict()
    c.inference.background_scale = (1.0,)
    # Not in the paper: with data.crop_tiles > 1, the cascade's fine tiles lie at most this
    # share of a tile apart (nnU-Net's tile_step_size); 0: as in training (1 - overlap).
    c.inference.tile_step = 0.0
    # Not in the paper: average with the left-right mirrored series' prediction (nnU-Net
    # mirrors by default); twice the network time. The commands' --flip_tta overrides it.
    c.inference.flip_tta = False
    # Not in the paper: each fine tile is also predicted with its box scaled in-plane by
    # these about its centre (more context at coarser voxels above 1), all blended:
    # multi-scale test-time augmentation, one network input per tile and scale.
    c.inference.box_scales = (1.0,)
    return c


def data_config(input_shape: tuple[int, int, int]) -> ml_collections.ConfigDict:
    """Where the data comes from and how a case becomes a network input."""
    d = ml_collections.ConfigDict()
    d.root = ""  # empty: the built-in phantom dataset, generated on first use
    d.layout = "auto"  # nnunet (dataset.json), spider (images/, masks/) or folder
    d.label_map = ""  # e.g. "1-5:2": dataset values -> ours; empty: the layout's own
    d.image_glob = "**/*_image.nii.gz"  # folder layout: images ...
    d.label_replace = ("_image", "_labels")  # ... and their labels' names
    d.cache_dir = ""  # empty: ~/.cache/lumbar_jax (or $LUMBAR_JAX_CACHE)
    # Keep read, windowed and label-mapped volumes as .npz in <cache_dir>/prepared, so epochs
    # after the first, later runs and worker processes read no raw files.
    d.preprocessed_cache = True
    d.phantom_cases = 80  # paper: 80 series, split 57/12/11
    d.phantom_seed = 0
    d.phantom_matrix = 320  # in-plane matrix of generated series
    d.input_shape = input_shape  # slices x superior-inferior x anterior-posterior
    d.num_classes = NUM_CLASSES
    # "image": the whole series (coarse). "label": a box around every labelled structure
    # plus a margin, as if the coarse model had found them (fine).
    d.crop = "image"
    d.crop_margin_mm = (4.0, 15.0, 10.0)
    # Not in the paper: a structure crop cut into this many tiles along the spine (superior
    # to inferior), neighbours sharing crop_tile_overlap of a tile, so each tile is resampled
    # to the input shape at a finer voxel. Training draws one tile at a random height; the
    # cascade predicts every tile and blends them (nnU-Net's sliding window, along one axis).
    d.crop_tiles = 1
    d.crop_tile_overlap = 0.25
    # "coarse": the box around stored coarse predictions, one <case_id>.nii.gz per case in
    # this folder (python -m lumbar_jax.predict --coarse_only --data=... writes them).
    d.coarse_predictions = ""
    d.window_percentiles = (0.5, 99.5)  # automatic window level/width
    # Not in the paper: "tissues" trains on images drawn anew for every sample from the
    # dataset's tissue maps (the phantom has them; config.synthesis), "image" on its images.
    # Cases without a tissue map (real data) keep their images either way.
    d.synthesis = "image"
    d.min_slices = 5  # fewer sagittal slices than this fails the dataset check
    d.worker_count = 0  # grain worker processes; 0 reads in the training process
    # Threads preparing samples in each reading process, and the batches read ahead (bounds
    # host memory: a fine batch of 5 is 16 MB).
    d.read_threads = 16
    d.prefetch_batches = 16
    d.train_split = "train"
    d.val_split = "validation"
    d.test_split = "test"
    return d


def augmentation_config() -> ml_collections.ConfigDict:
    """Augmentations, each with a probability per sample and a range."""
    a = ml_collections.ConfigDict()
    # Paper: rotation, translation, random noise; plus scaling, and nnU-Net-like optional
    # ones. Each has a probability per sample and a range. The spatial ones (and the crop and
    # resize) compose into one affine resampling on the host; labels go by nearest neighbour.
    a.rotate_prob = 0.5
    a.rotate_max_deg = 10.0  # in the sagittal plane
    # Out of plane: about the superior-inferior and the anterior-posterior axis (each drawn).
    # Slices are 3.5-5 mm thick, so a few degrees already shift a slice's edge by a slice.
    a.rotate_oop_prob = 0.2
    a.rotate_oop_max_deg = 4.0
    a.translate_prob = 0.5
    a.translate_max_mm = (2.0, 10.0, 5.0)
    a.scale_prob = 0.3
    a.scale_range = (0.85, 1.15)  # isotropic zoom, log-uniform; > 1 enlarges the anatomy
    a.noise_prob = 0.5  # added on the device, inside the train step
    a.noise_max_std = 0.05  # of the windowed [0, 1] intensity range
    # Intensity, on the host after resampling, in this order (noise comes last, on device).
    a.bias_prob = 0.2
    a.bias_max = 0.3  # largest |log| of the smooth multiplicative field
    a.contrast_prob = 0.15
    a.contrast_range = (0.75, 1.25)  # stretch about the mean
    a.gamma_prob = 0.3
    a.gamma_range = (0.7, 1.5)  # log-uniform
    # Crops around structures ("label"/"coarse" crop): each side's margin moves by up to
    # this much, so the fine stage learns boxes as loose or tight as the coarse stage's.
    a.crop_margin_jitter_mm = (2.0, 7.5, 5.0)
    a.flip_prob = 0.5  # left-right: reverses the slice (d) axis of image and label
    return a


def model_config() -> ml_collections.ConfigDict:
    """The network."""
    m = ml_collections.ConfigDict()
    # 3D U-Net (Cicek et al. 2016): 4 down and 4 up levels, base 32 filters doubling.
    m.base_filters = 32
    # A 16-slice stack cannot halve four times and keep context, so the first level
    # pools only in-plane.
    m.pool_factors = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    m.norm = "group"
    m.num_groups = 8
    # How the 3x3x3 convolutions, the pooling and the up-convolutions run (model/conv.py):
    # "auto" picks per backend; every choice has the same parameters and outputs.
    m.conv_impl = "auto"
    m.layer_impl = "auto"
    m.dtype = "float32"
    m.remat = False
    # Not in the paper: nnU-Net's deep supervision, a loss on this many coarser decoder levels
    # too (weights halving per level); inference and export use the full-resolution head.
    m.deep_supervision = 0
    return m


def synthesis_config() -> ml_collections.ConfigDict:
    """Ranges of the images drawn from tissue maps (data.synthesis="tissues"), after SynthSeg
    (Billot et al. 2023) and TotalSpineSeg's augmentations."""
    s = ml_collections.ConfigDict()
    # Share of the samples with a tissue map that get a drawn image; the others keep the
    # dataset's own image (the phantom's T2 rendering).
    s.prob = 1.0
    # Share of samples whose tissue means are drawn from U(0, 1) (SynthSeg); the others
    # within each tissue's range on T2 (tissues.py).
    s.random_contrast_prob = 0.5
    s.tie_prob = 0.6  # a tissue takes its tie partner's mean (x U(0.85, 1.15)): shape decides
    s.std_range = (0.01, 0.08)  # spread within a tissue (SynthSeg: 0.02-0.10 of the range)
    s.thickness_mm = (1.0, 8.0)  # slice profile across slices (SynthSeg: up to 8 mm)
    s.max_gap = 1.3  # slice spacing up to this many thicknesses
    s.inplane_mm = (0.4, 1.5)  # in-plane point spread
    s.bias_max = 0.5  # std of the log bias field's nodes (SynthSeg 0.5)
    s.noise_max = 0.05  # Rician noise, of the window
    s.window_top = (0.7, 1.1)  # window top over the brightest tissue: bright ones saturate
    s.gamma_std = 0.3  # log-normal gamma (SynthSeg 0.4)
    s.invert_prob = 0.1  # an inverted contrast (TotalSpineSeg 0.3)
    return s


def train_config() -> ml_collections.ConfigDict:
    """The loop: validation, checkpoints, logging, non-finite steps."""
    t = ml_collections.ConfigDict()
    t.eval_every_epochs = 10
    t.checkpoint_every_epochs = 1
    t.log_every_steps = 10
    # A step whose loss or gradients are NaN/Inf: "stop" raises, naming the step; "skip"
    # keeps the state as it was (decided on the device), logs it, and stops after
    # max_skipped_steps such steps in a row. Neither ever checkpoints a non-finite state.
    t.nonfinite = "stop"
    t.max_skipped_steps = 10
    return t


def apply_size(c: ml_collections.ConfigDict, arg: str) -> ml_collections.ConfigDict:
    """Shrinks a paper config for a CPU (``cpu``, ``cpu_full``) or for tests (``tiny``).

    ``cpu_full`` (``make demo-full``) is the CPU preset with a finer fine stage
    (``configs/fine.py``); the coarse stage is the same.
    """
    if arg == "":
        return c
    if arg in ("cpu", "cpu_full"):
        # The demo: minutes on a 2-core CPU. Departures from the paper, each measured
        # (README "The demo"): a larger step size for a thousand steps instead of ~4,500,
        # warmed up over an epoch and decayed by a cosine (without it the foramen and the
        # cord are not learnt in time); half the training images drawn from the phantom's
        # tissue maps with random contrasts, so the cascade carries to real scans.
        c.data.phantom_matrix = 192
        c.data.synthesis = "tissues"
        c.synthesis.prob = 0.5
        c.model.base_filters = 8
        c.optim.batch_size = 2
        c.optim.learning_rate = 3e-3
        c.optim.schedule = "cosine"
        c.optim.warmup_epochs = 1.0
        c.optim.num_epochs = 16
        c.train.eval_every_epochs = 4
        return c
    if arg == "tiny":
        # Seconds per run, for tests; tests do not write to the user's cache.
        c.data.input_shape = (8, 32, 16)
        c.data.preprocessed_cache = False
        c.data.phantom_cases = 8
        c.data.phantom_matrix = 64
        c.model.base_filters = 4
        c.model.pool_factors = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
        c.optim.batch_size = 2
        c.optim.learning_rate = 1e-3
        c.optim.num_epochs = 2
        c.train.eval_every_epochs = 1
        c.train.log_every_steps = 1
        return c
    raise ValueError(
        f"Unknown config argument {arg!r}; choose one of '', 'cpu', 'cpu_full', 'tiny'."
    )
