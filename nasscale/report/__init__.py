"""The report of one or more studies: plain report data read from the study storage (``data``, light),
plotly figures (``figures``) and the self-contained HTML page (``page``).

May import: ``scale``, ``search``, ``spec``, ``errors``, ``units``; plotly only in ``figures`` and ``page``.
"""
