"""Video datasets for TCLR: split readers, decoding, clip sampling, augmentation, synthetic data."""
