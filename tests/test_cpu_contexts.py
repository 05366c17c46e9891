"""The CPU backend's pool wherever Python runs, each context run as a user would (a subprocess):
a script without a main guard, ``python - < file``, ``python -c``, an interactive shell,
daemonic multiprocessing workers (FATE's per-task processes), a fork; workers that die with their
parent on kill -9; the in-process fallback; the shared per-machine pool."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a newcomer writes: no main guard, the pool used for real (2 workers), plain prints.
USER_CODE = textwrap.dedent("""\
    from accel import CpuBackend, EncryptedVector, generate_keypair
    pk, sk = generate_keypair(1024)
    be = CpuBackend(workers=2)
    ms = list(range(40))
    assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
    v = EncryptedVector.encrypt(pk, [1.5, 2.5, -3.0], backend=be)
    assert list((v + v).decrypt(sk)) == [3.0, 5.0, -6.0]
    print("RESULT", be.tasks_submitted > 0, len(be._executor.worker_pids()))
""")


def _run(args, *, stdin=None, env_extra=None, timeout=180):
    env = dict(os.environ, PYTHONWARNINGS="error", **(env_extra or {}))
    return subprocess.run([sys.executable, "-W", "error", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _assert_pool_ran(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT True 2" in proc.stdout, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr


def test_script_without_main_guard(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(USER_CODE)
    _assert_pool_ran(_run([str(script)]))


def test_script_on_stdin():
    _assert_pool_ran(_run(["-"], stdin=USER_CODE))


def test_python_c():
    _assert_pool_ran(_run(["-c", USER_CODE]))


def test_interactive_shell():
    proc = _run(["-q", "-i"], stdin=USER_CODE + "\n")
    _assert_pool_ran(proc)


DAEMONIC = textwrap.dedent("""\
    import multiprocessing, sys
    def task(i):
        from accel import CpuBackend, generate_keypair
        pk, sk = generate_keypair(512, allow_insecure=True)
        be = CpuBackend(workers=2)
        ms = list(range(i, i + 16))
        ok = be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
        return ok and len(be._executor.worker_pids()) == 2
    if __name__ == "__main__":
        with multiprocessing.get_context(sys.argv[1]).Pool(2) as pool:  # daemonic workers
            print("RESULT", all(pool.map(task, range(3))))
""")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_inside_daemonic_multiprocessing_workers(tmp_path, method):
    script = tmp_path / "per_task.py"
    script.write_text(DAEMONIC)
    proc = _run([str(script), method])
    assert proc.returncode == 0 and "RESULT True" in proc.stdout, proc.stderr[-3000:]


FORK = textwrap.dedent("""\
    import os
    from accel import CpuBackend, generate_keypair
    pk, sk = generate_keypair(512, allow_insecure=True)
    be = CpuBackend(workers=2)
    ms = list(range(30))
    assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
    parent_workers = be._executor.worker_pids()
    pid = os.fork()
    if pid == 0:  # the child starts its own pool; the parent's is not its to use or stop
        ok = be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
        ok = ok and not set(be._executor.worker_pids()) & set(parent_workers)
        be.close()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
    assert be._executor.worker_pids() == parent_workers
    print("RESULT", os.waitstatus_to_exitcode(status))
""")


def test_fork_after_the_pool_started():
    proc = _run(["-c", FORK])
    assert proc.returncode == 0 and "RESULT 0" in proc.stdout, proc.stderr[-3000:]


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie its new parent has yet to reap is dead too


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc (Linux)")
def test_workers_die_with_their_parent_on_kill_9():
    code = USER_CODE + "import sys, time\nprint('PIDS', *be._executor.worker_pids(), flush=True)\ntime.sleep(600)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        pids = None
        for line in proc.stdout:
            if line.startswith("PIDS"):
                pids = [int(p) for p in line.split()[1:]]
                break
        assert pids and len(pids) == 2 and not any(_dead(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not all(_dead(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_dead(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


FALLBACK = textwrap.dedent("""\
    import sys, warnings
    from accel import CpuBackend, generate_keypair
    pk, sk = generate_keypair(512, allow_insecure=True)
    sys.executable = ""  # as in an embedded interpreter: no Python to start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        be = CpuBackend(workers=2)
        ms = list(range(50))
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
        assert CpuBackend(workers=2).raw_encrypt(pk, ms)
    print("RESULT", len(caught), caught[0].category.__name__, be.describe()["in_process_only"] is not None)
    print("MESSAGE", caught[0].message)
""")


def test_no_worker_possible_runs_in_process_and_warns_once():
    proc = _run(["-c", FALLBACK])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 1 RuntimeWarning True" in proc.stdout
    assert "embedded interpreter" in proc.stdout  # the reason is named


SHARED = textwrap.dedent("""\
    import sys
    from accel import CpuBackend, generate_keypair
    from accel.backends._pool import server_info
    pk, sk = generate_keypair(512, allow_insecure=True)
    be = CpuBackend(workers=2, pool="shared", shared_idle=2)
    ms = list(range(int(sys.argv[1]), int(sys.argv[1]) + 40))
    assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
    info = server_info(be.shared_socket)
    print("RESULT", info["pid"], *info["workers"])
""")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc (Linux)")
def test_processes_of_a_job_share_one_pool_that_stops_when_idle(tmp_path):
    sock = tmp_path / "run" / "pool.sock"
    sock.parent.mkdir(mode=0o700)
    env = {"HEA_CPU_POOL_SOCKET": str(sock)}
    procs = [subprocess.Popen([sys.executable, "-W", "error", "-c", SHARED, str(i * 100)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, **env))
             for i in range(3)]  # concurrent tasks: one server between them
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    seen = {tuple(line.split()[1:]) for out, _ in outs for line in out.splitlines() if line.startswith("RESULT")}
    assert len(seen) == 1, seen
    server, *workers = (int(x) for x in seen.pop())
    assert len(workers) == 2
    deadline = time.monotonic() + 20
    while not (_dead(server) and all(_dead(w) for w in workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _dead(server) and all(_dead(w) for w in workers)
    assert not sock.exists()


def test_a_killed_worker_is_replaced_and_its_task_retried():
    from accel import CpuBackend

    from .conftest import keypair
    pk, sk = keypair(512)
    with CpuBackend(workers=2) as be:
        ms = list(range(30))
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms
        before = be._executor.worker_pids()
        os.kill(before[0], signal.SIGKILL)
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms)) == ms  # retried on a fresh worker
        after = be._executor.worker_pids()
        assert before[0] not in after and before[1] in after and len(after) == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jupyter_client/jupyter_core's own notices
def test_jupyter_kernel(monkeypatch):
    pytest.importorskip("ipykernel")
    manager = pytest.importorskip("jupyter_client.manager")
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    km, kc = manager.start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    out = []

    def collect(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    try:
        reply = kc.execute_interactive(USER_CODE, timeout=180, output_hook=collect)
        assert reply["content"]["status"] == "ok", "".join(out)
        assert "RESULT True 2" in "".join(out), "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
