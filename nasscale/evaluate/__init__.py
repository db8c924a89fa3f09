"""What an architecture scores: datasets and splits (``data``), the training recipe (``settings``, light) and
loop (``training``), final training and export of a chosen model (``final``), zero-cost proxies and their
validation against training (``zero_cost``, ``proxy_validation``), latency measurement (``latency``) and
latency tables with their calibration (``latency_table``, ``latency_calibration``).

May import: ``models``, ``space``, ``presets``, ``spec``, ``errors``, ``units``. Never imports ``search``.
"""
