"""fip's built-in reference operators, installed as ``fip_operators`` and registered through the
``fip.operators`` entry-point group, exactly like a third-party plugin. One module per family."""
