"""BlazePose GHUM's model files: ``fetch_blazepose`` takes the .tflite files out of the mediapipe
wheel into this folder (``make models``), ``services/triton/tflite_to_onnx.py`` writes their ONNX
conversions beside them; the model repositories' folders link here. Licence: ``README.md``."""
