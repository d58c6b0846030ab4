"""Project tooling that is not part of the installed ``rsgen`` package: shipping models into ``assets/``
(``tools.release``) and training on a remote GPU machine from a small upload (``tools.remote_gpu``).
Run from the repository root, e.g. ``python -m tools.release.ship_model ...``."""
