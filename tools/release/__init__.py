"""Shipping trained models into ``assets/`` with a model card (``python -m tools.release.ship_model``)."""
