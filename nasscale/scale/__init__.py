"""Model scaling: the compound-coefficient solver (``solver``), ladders of scaled models with EfficientNet's
released B1-B7 for comparison (``ladder``), EfficientNetV2-style per-stage allocation (``allocation``), one
architecture fitted to a MAC budget along one dimension or by width and resolution (``fitting``), their argument
checks (``checks``) and the pipeline behind ``nasscale scale`` (``pipeline``: baseline, proxy evaluation, ladder,
latency, study record).

May import: ``search``, ``evaluate``, ``models``, ``space``, ``presets``, ``spec``, ``errors``, ``units``.
``solver``, ``ladder``, ``allocation``, ``fitting`` and ``checks`` are light (no torch); ``pipeline`` imports the
heavy parts only inside the steps that train or time.
"""
