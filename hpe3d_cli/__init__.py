"""The ``hpe3d`` command: REST client of the gateway, keypoint file I/O and the supervised local stack."""
