"""The search-space DSL: value domains (``domains``), the space model and its checks (``model``), YAML and
dict parsing with the built-in spaces (``parsing``), a space's size and MAC range (``extent``), RegNet's
generated spaces (``regnet``) and sampling an ``Arch`` from a space (``sampling``).

May import: ``spec``, ``errors``, ``units``. Light: no torch; optuna is never imported here.
"""
