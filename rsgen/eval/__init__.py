"""Evaluation of generated remote-sensing imagery, one module per idea.

- :mod:`reference_data`: real reference sets (EuroSAT RGB cached as uint8 ``.npy``, image folders)
- :mod:`feature_net`: the project's RS feature network (EuroSAT ResNet) behind FID_RS / KID_RS / IS_RS
- :mod:`distribution`: FID / KID / IS via torchmetrics (RS network, or the standard InceptionV3 from a file)
- :mod:`generated_set`: a folder of generated images with prompts and metadata
- :mod:`text_faithfulness`: RS-classifier accuracy on images generated from class prompts
- :mod:`metadata_faithfulness`: the shared score (generated vs real held-out vs shuffled metadata)
- :mod:`gsd_predictor`: GSD regression from an image (log scale)
- :mod:`year_predictor`: acquisition-year regression (NAIP and Landsat time series)
- :mod:`clip_score`: CLIP_RS (offline RS-CLIP) and CLIP with a local checkpoint
- :mod:`augmentation`: downstream augmentation test (real vs real + synthetic classifier training)
- :mod:`report`: report.md / report.json / plots
- :mod:`control_sets`: control "generated" sets with known answers (real images, noise)
- :mod:`evaluate`: one evaluation run (used by ``rsgen evaluate``)
- :mod:`procedural_checks`: rule checks on procedural synthetic scenes (written by the data helper)
"""
