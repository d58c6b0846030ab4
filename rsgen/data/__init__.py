"""Data: readers of image-caption sources, caption writing, curation into manifests and WebDataset shards,
and the training dataset. See ``rsgen curate`` and :class:`rsgen.data.dataset.ImageCaptionDataset`."""
