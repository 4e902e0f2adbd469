"""prunequant: train, prune, quantize and measure a depthwise-separable 1D CNN."""

__version__ = "0.1.0"
