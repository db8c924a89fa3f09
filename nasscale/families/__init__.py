"""The classic CNN families beyond EfficientNet and ConvNeXt: their PyTorch blocks (``classic_blocks``, torch),
RegNet's width rule (``regnet``, light) and RegNet's generated search space (``regnet_space``, light)."""
