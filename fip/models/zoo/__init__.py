"""fip's own models, one folder each (``card.json`` and the files it names), installed through the entry-point group
``fip.models`` like any plugin's (:mod:`fip.models.catalogue`)."""
