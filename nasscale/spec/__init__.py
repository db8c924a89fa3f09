"""The architecture vocabulary and its rules, from the spec alone: block types and layouts (``vocabulary``),
``Stage`` and ``Arch`` with their validation (``stage``, ``arch``), their normalization settings (``norm``), the
integer rules of widths and sizes (``channels``, ``geometry``), the layouts of Inception's modules (``inception``),
serialization and ``arch_id``, exact analytic cost (``cost``, from the single-layer rules of ``cost_primitives`` and
the families' rules in ``attention_cost`` and ``inception_cost``), EfficientNet's rounding and rescaling rules
(``rescaling``), RegNet's parameterisation (``regnet``), timm's block strings (``interchange``) and seeded random
architectures for tests (``random_arch``).

May import: ``nasscale.errors``, ``nasscale.units``. Light: no torch, no numpy.
"""
