"""Whether a process id still names a running process (for sweeping what dead processes left behind)."""
from __future__ import annotations

import os


def is_running(pid: int) -> bool:
    """True while ``pid`` runs, also when it belongs to another user (signal 0 is then refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
