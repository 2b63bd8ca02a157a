"""fip's training configs, installed as the data package ``fip_train``: ``configs/OPERATOR.yaml`` per operator,
``configs/extensions/`` and ``configs/overlays/``. No code: ``fip train -c NAME`` reads the files
(:func:`fip.training.resolve_config`)."""
