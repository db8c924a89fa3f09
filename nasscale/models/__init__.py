"""From spec to torch: the blocks (``blocks`` for the MBConv-era ones, ``classic_blocks`` for ResNets and the
other classic families, ``attention_blocks`` for transformer stages, ``inception_blocks`` for Inception-v3 and
Inception-ResNet-v2), ``build(arch)`` (``build``), and the oracle counts of a built model with fvcore and
torch's FlopCounterMode (``counts``).

May import: ``spec``, ``errors``, ``units``. Imports torch (``counts``: fvcore too).
"""
