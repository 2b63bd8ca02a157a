"""The models this plugin ships, one folder each (``card.json`` and its files), found by fip through the
``fip.models`` entry point in ``pyproject.toml``. Put one here with::

    fip build example.posterize --source PHOTOS --budget 30 --out models/posterize
    fip package models/posterize --into fip_example_plugin/models
"""
