"""Searching a space with Optuna or Ray: the settings (``config``), every study and trial attribute key
(``record``), storages, heartbeats and locks (``storage``), trial accounting and retries (``trials``),
samplers and pruners (``samplers``), the trial objective (``objective``), the backends (``backends``), Pareto
fronts and hypervolumes (``pareto``) and reading results back (``results``).

May import: ``evaluate``, ``models``, ``space``, ``presets``, ``spec``, ``errors``, ``units``. ``config``,
``record``, ``pareto`` and ``results`` import no torch (the report reads studies through them).
"""
