"""The live path: ``/v1/live`` bridges a browser's WebSocket to ``Pose2D.Stream`` and
``Lifter3D.Stream`` (``session.py``), with the message formats in ``protocol.py``, the per-frame
answer in ``results.py`` and the recording of a session into a normal job in ``recording.py``."""
