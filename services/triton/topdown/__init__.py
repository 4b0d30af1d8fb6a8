"""The top-down 2D models (HRNet, SimpleBaseline) as PyTorch modules whose ``state_dict`` loads the
official checkpoints (``checkpoint.py``), and their export to a Triton model folder (``export_onnx.py``,
``hpe3d models export``). Which models exist, their crop sizes and checkpoint files:
``services/common/pose_models.py``. Needs torch; no image but the operator's export tool carries it."""
