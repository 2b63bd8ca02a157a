"""fip's Gradio photo-editing demo (installed as ``fip_demo``); see :mod:`fip_demo.app`."""
