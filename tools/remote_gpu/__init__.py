"""Training on a GPU machine that has neither the data nor the text encoder: pack a small bundle here
(``python -m tools.remote_gpu.bundle``), run ``tools/remote_gpu/remote_gpu*.sh`` there."""
