"""The supervisor restarts real processes that die, with back-off, and stops them all."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hpe3d_cli.local_stack import LocalStack, parse_replicas
from hpe3d_cli.supervisor import ProcessSpec, Supervisor


def _spec(tmp_path, name: str, code: str) -> ProcessSpec:
    return ProcessSpec(part=name, replica=0, argv=(sys.executable, "-c", code), env=dict(os.environ),
                       cwd=tmp_path, log_path=tmp_path / f"{name}.log", stop_grace_s=2.0)


def _until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_a_killed_process_is_restarted_with_the_same_spec(tmp_path, caplog):
    sup = Supervisor(backoff_initial_s=0.2, poll_s=0.05)
    proc = sup.add(_spec(tmp_path, "sleeper", "import os,time; print('started', os.getpid(), flush=True); time.sleep(60)"))
    sup.watch()
    try:
        first = proc.pid
        _until(lambda: "started" in proc.spec.log_path.read_text())
        os.kill(first, signal.SIGKILL)
        _until(lambda: proc.restarts == 1 and proc.alive())
        assert proc.pid != first
        assert proc.exit_codes == [-signal.SIGKILL]
        assert any("sleeper" in r.getMessage() and "restarting" in r.getMessage() for r in caplog.records)
        _until(lambda: proc.spec.log_path.read_text().count("started") == 2)
    finally:
        sup.stop_all()
    assert not proc.alive()


def test_back_off_doubles_for_a_crash_loop_and_is_capped(tmp_path):
    sup = Supervisor(backoff_initial_s=0.1, backoff_max_s=0.4, stable_after_s=30, poll_s=0.02)
    assert [sup.backoff_s(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.4, 0.4]
    proc = sup.add(_spec(tmp_path, "crasher", "raise SystemExit(3)"))
    sup.watch()
    try:
        _until(lambda: proc.restarts >= 3)
        assert set(proc.exit_codes) == {3}
        assert proc.crashes_in_a_row >= 3
    finally:
        sup.stop_all()


def test_the_children_of_a_killed_process_are_killed_before_the_restart(tmp_path):
    code = ("import subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
            "print(c.pid, flush=True); time.sleep(60)")
    sup = Supervisor(backoff_initial_s=0.2, poll_s=0.05)
    proc = sup.add(_spec(tmp_path, "parent", code))
    sup.watch()
    try:
        _until(lambda: proc.spec.log_path.read_text().strip() != "")
        child = int(proc.spec.log_path.read_text().split()[0])
        os.kill(proc.pid, signal.SIGKILL)
        _until(lambda: proc.restarts == 1)
        _until(lambda: not _running(child))
    finally:
        sup.stop_all()


def _running(pid: int) -> bool:
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_hold_keeps_a_process_down_until_release(tmp_path):
    sup = Supervisor(backoff_initial_s=0.1, poll_s=0.05)
    proc = sup.add(_spec(tmp_path, "s3", "import time; time.sleep(60)"))
    sup.watch()
    try:
        sup.hold("s3")
        time.sleep(0.5)
        assert not proc.alive() and proc.restarts == 0
        sup.release("s3")
        assert proc.alive() and proc.restarts == 1
    finally:
        sup.stop_all()


def test_parse_replicas():
    assert parse_replicas("worker=2, gateway=2,pose2d=3") == {"worker": 2, "gateway": 2, "pose2d": 3}
    assert parse_replicas("") == {}
    for bad in ("s3=2", "worker", "worker=two", "worker=0", "nope=1"):
        with pytest.raises(ValueError, match="bad replica"):
            parse_replicas(bad)


def test_replicas_get_fixed_ports_and_a_balanced_address_list(tmp_path):
    stack = LocalStack(workdir=tmp_path, components=("pose2d", "triton"), replicas={"pose2d": 2, "triton": 2})
    with pytest.raises(ValueError, match="triton replicas"):
        LocalStack(workdir=tmp_path, replicas={"triton": 2})
    assert len(set(stack.ports["pose2d"])) == 2
    assert stack.settings.pose2d_addr == ",".join(f"127.0.0.1:{p}" for p in stack.ports["pose2d"])
    with pytest.raises(ValueError, match="replicas"):
        LocalStack(workdir=tmp_path, replicas={"s3": 2})


def test_comma_separated_stage_addresses_become_one_balanced_static_target():
    from services.common.grpc_server import client_target
    assert client_target("127.0.0.1:5001,127.0.0.1:5002") == "ipv4:127.0.0.1:5001,127.0.0.1:5002"
    assert client_target("pose2d:50052") == "dns:///pose2d:50052"
    assert client_target("ipv4:127.0.0.1:1") == "ipv4:127.0.0.1:1"


def test_free_ports_are_outside_the_ephemeral_range_and_never_repeat():
    from hpe3d_cli.local_stack import _ephemeral_range, free_port
    lo, hi = _ephemeral_range()
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == 300
    assert not any(lo <= p <= hi for p in ports)


def test_serve_refuses_a_bad_replica_list_before_starting_anything(capsys):
    from hpe3d_cli.cli import EXIT_USAGE, main
    assert main(["serve", "--replicas", "s3=2"]) == EXIT_USAGE
    assert "bad replica item 's3=2'" in capsys.readouterr().out
