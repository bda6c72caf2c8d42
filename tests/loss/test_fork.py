"""Fork safety (issue 15): pyce in child processes.

GNU OpenMP's thread pool does not survive fork(); pyce's policy is "serial in
a child of a parent that used threads" (cext/pyce_threads.h).  Each scenario
runs this file as a script in its own session (start_new_session=True) with a
timeout; on a timeout the whole process group (parent and pool workers) is
killed and the test fails, so a regression fails the suite instead of hanging.

Checked in every scenario: the children finish, their results are bitwise equal
to the parent's (determinism across thread counts is promised), the parent
really started its OpenMP pool before the fork (else the scenario would prove
nothing), and the thread count the children used: 1 in a fork child of a
parent that used threads (pyce._ce.threads_for and the OS thread count agree),
more than 1 in a fork child of a parent that never went parallel and in spawn /
forkserver children (observed as new OS threads in /proc/self/task).

PYCE_FORK_TEST_TIMEOUT (seconds, default 240) shortens the timeout, e.g. to show
the tests fail against a build without the fix.
"""
import hashlib
import importlib.util
import io
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

TIMEOUT = float(os.environ.get("PYCE_FORK_TEST_TIMEOUT", "240"))
N, C = 262144, 10      # 2.6M elements: well past the kernels' serial threshold
FUNCS = ["cross_entropy_and_grad", "cross_entropy_and_grad_general", "cross_entropy",
         "cross_entropy_none", "cross_entropy_backward", "softmax", "log_softmax",
         "linear_cross_entropy", "linear_cross_entropy_and_grad"]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork()")


# ------------------------------------------------------------ run in the scenario processes

def _batch():
    """The same batch in every process (seeded), so spawn children can rebuild it."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    t = rng.integers(0, C, N)
    h = rng.standard_normal((N // 32, 32)).astype(np.float32)
    w = (rng.standard_normal((64, 32)) * 0.2).astype(np.float32)
    return x, t, h, w, t[: N // 32] % 64


def _call(name, n_threads):
    """Run one pyce function on _batch(); the sha256 of its outputs' bytes."""
    import pyce
    x, t, h, w, th = _batch()
    kw = {} if n_threads is None else {"n_threads": n_threads}
    calls = {
        "cross_entropy_and_grad": lambda: pyce.cross_entropy_and_grad(x, t, **kw),  # _ce.fast_2d
        "cross_entropy_and_grad_general":
            lambda: pyce.cross_entropy_and_grad(x, t, label_smoothing=0.1, **kw),
        "cross_entropy": lambda: pyce.cross_entropy(x, t, **kw),
        "cross_entropy_none": lambda: pyce.cross_entropy(x, t, reduction="none", **kw),
        "cross_entropy_backward": lambda: pyce.cross_entropy_backward(x, t, **kw),
        "softmax": lambda: pyce.softmax(x, **kw),
        "log_softmax": lambda: pyce.log_softmax(x, **kw),
        "linear_cross_entropy": lambda: pyce.linear_cross_entropy(h, w, th, **kw),
        "linear_cross_entropy_and_grad":
            lambda: pyce.linear_cross_entropy_and_grad(h, w, th, **kw),
    }
    out = calls[name]()
    outs = out if isinstance(out, tuple) else (out,)
    digest = hashlib.sha256()
    for o in outs:
        digest.update(np.ascontiguousarray(np.asarray(o)).tobytes())
    return digest.hexdigest()


def _os_threads():
    """This process's OS thread count (Linux), or None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _new_os_threads(fn, *args):
    """(fn(*args), how many OS threads the call left behind: None without /proc).
    A started OpenMP pool keeps its workers, so a first threaded call leaves >= 1."""
    h, w = _batch()[2:4]
    h @ w.T  # NumPy's BLAS (re)starts its own threads here, not inside the count below
    before = _os_threads()
    result = fn(*args)
    after = _os_threads()
    return result, None if before is None else after - before


def _child(job):
    """In a pool worker: run job = (function name, n_threads); report what happened."""
    from pyce import _ce
    name, n_threads = job
    digest, grew = _new_os_threads(_call, name, n_threads)
    return {"digest": digest, "threads_for": _ce.threads_for(N, C, n_threads or 0),
            "new_os_threads": grew, **_ce.threads_info()}


def _parent_uses_threads(name):
    """The parent's results for `name` with 2 threads and with the default;
    checks they agree and that the OpenMP pool was started (observed as new OS
    threads, so the check holds on builds without pyce._ce.threads_info too)."""
    digest, grew = _new_os_threads(_call, name, 2)
    assert grew is None or grew >= 1, f"{name} did not start the OpenMP pool"
    assert _call(name, None) == digest, f"{name}: n_threads=2 and default differ in the parent"
    return digest


def scenario_fork(name):
    """The parent uses threads, then fork children call `name` (default and 2 threads)."""
    digest = _parent_uses_threads(name)
    jobs = [(name, None), (name, 2), (name, None), (name, 2)]
    with mp.get_context("fork").Pool(2) as pool:
        return {"parent": digest, "children": pool.map(_child, jobs)}


def _issue_loss(_):
    import pyce
    from pyce import _config
    x, t = _batch()[:2]
    text = io.StringIO()
    _config.show_config(file=text)
    return float(pyce.cross_entropy_and_grad(x, t)[0]), text.getvalue()


def scenario_issue():
    """The issue's example: the parent's call starts the pool; fork Pool(2) children."""
    parent = _issue_loss(0)[0]
    with mp.get_context("fork").Pool(2) as pool:
        children = pool.map(_issue_loss, range(4))
    return {"parent": parent, "children": [c[0] for c in children], "config": children[0][1]}


def scenario_never_parallel(name):
    """The parent calls pyce only on a small batch (serial): fork children keep threads."""
    import pyce
    from pyce import _ce
    pyce.cross_entropy(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
    started = _ce.threads_info()["pool_started"]
    # maxtasksperchild=1: each job in a process of its own, whose first threaded
    # call must start the pool (two jobs in one worker would find it started)
    with mp.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
        children = pool.map(_child, [(name, 2), (name, 2)])
    return {"parent_started_before_fork": started, "parent": _call(name, 2),
            "children": children}


def scenario_start_method(method, name):
    """The parent uses threads, then `method` children call `name` with 2 threads."""
    digest = _parent_uses_threads(name)
    with mp.get_context(method).Pool(2, maxtasksperchild=1) as pool:  # as above
        return {"parent": digest, "children": pool.map(_child, [(name, 2), (name, 2)])}


def _nested(depth, name):
    """os.fork() `depth` times, the innermost process calls `name`; its report."""
    if depth == 0:
        return _child((name, 2))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            report = json.dumps(_nested(depth - 1, name)).encode()
            os.write(w, report)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def scenario_grandchild(name):
    """The parent uses threads; a child (raw os.fork) forks a grandchild that calls pyce."""
    digest = _parent_uses_threads(name)
    return {"parent": digest, "children": [_nested(2, name)]}


def scenario_torch(order):
    """The parent runs a threaded torch op (torch and pyce share one libgomp) but
    never pyce's threads; fork children call pyce with threads."""
    if order == "torch_first":
        import torch
        import pyce  # noqa: F401
    else:
        import pyce  # noqa: F401
        import torch
    from pyce import _ce
    torch.set_num_threads(2)
    torch.nn.functional.cross_entropy(torch.randn(4096, 1000), torch.zeros(4096, dtype=torch.long))
    started = _ce.threads_info()["pool_started"]
    with mp.get_context("fork").Pool(2) as pool:
        children = pool.map(_child, [("cross_entropy_and_grad", None), ("softmax", 2)])
    return {"pyce_started_before_fork": started, "children": children,
            "parent": [_call("cross_entropy_and_grad", None), _call("softmax", 2)]}


def _train(_=None):
    """A fit whose every training batch enters the OpenMP region (8192 x 10 logits)."""
    from pyce import nn, optim, train
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16384, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    model = nn.mlp([8, 16, 10], rng=0)
    hist = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                     x, y, epochs=2, batch_size=8192, verbose=0)
    digest = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        digest.update(k.encode() + np.ascontiguousarray(v).tobytes())
    digest.update(np.asarray(hist.step_losses, np.float64).tobytes())
    return digest.hexdigest()


def scenario_fit():
    """The parent trains (threads), then a fork child trains the same model."""
    digest, grew = _new_os_threads(_train)
    assert grew is None or grew >= 1, "fit did not start the OpenMP pool"
    with mp.get_context("fork").Pool(1) as pool:
        return {"parent": digest, "children": pool.map(_train, [0])}


def _cli(_):
    from pyce import _ce
    from pyce.app import cli
    text = io.StringIO()
    with redirect_stdout(text):
        code = cli.main(["bench", "--quick"])
    return {"code": code, "output": text.getvalue(), **_ce.threads_info()}


def scenario_cli():
    """The parent uses threads, then a fork child runs `pyce bench --quick`
    (its 4096 x 1000 shape enters the OpenMP region)."""
    digest = _parent_uses_threads("cross_entropy_and_grad")
    with mp.get_context("fork").Pool(1) as pool:
        return {"parent": digest, "children": pool.map(_cli, [0])}


# ------------------------------------------------------------ the tests (run by pytest)

def _run(*argv):
    """Run this file as a script in a new session; kill its process group on a
    timeout (and always afterwards: no orphaned pool worker survives)."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv],
                            cwd=os.path.dirname(os.path.abspath(__file__)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"scenario {argv} hung: killed after {TIMEOUT:.0f} s\n{out}\n{err}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"scenario {argv} failed ({proc.returncode}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def _check_serial_children(res):
    for child in res["children"]:
        assert child["digest"] == res["parent"]
        assert child["serial_after_fork"] and child["pool_started"]
        assert child["threads_for"] == 1
        if child["new_os_threads"] is not None:
            assert child["new_os_threads"] == 0


def test_issue_example():
    res = _run("issue")
    assert res["children"] == [res["parent"]] * 4
    assert ("after fork      : serial in a child of a parent that used threads (pyce's, "
            "or had torch loaded) (this process is such a child: serial)") in res["config"]


@pytest.mark.parametrize("name", FUNCS)
def test_fork_child_after_threads(name):
    """Children asking for the default threads and for n_threads=2 finish, serially,
    with the parent's results."""
    res = _run("fork", name)
    assert len(res["children"]) == 4
    _check_serial_children(res)


@pytest.mark.parametrize("name", ["cross_entropy_and_grad", "softmax"])
def test_grandchild_after_threads(name):
    """The mark is inherited: a child of a forked child is serial too (raw os.fork)."""
    _check_serial_children(_run("grandchild", name))


@pytest.mark.parametrize("name", ["cross_entropy_and_grad", "log_softmax"])
def test_fork_child_of_serial_parent_keeps_threads(name):
    res = _run("never_parallel", name)
    assert res["parent_started_before_fork"] is False
    for child in res["children"]:
        assert child["digest"] == res["parent"]
        assert not child["serial_after_fork"]
        assert child["threads_for"] == 2
        if child["new_os_threads"] is not None:
            assert child["new_os_threads"] >= 1  # libgomp started a worker


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("name", ["cross_entropy_and_grad", "cross_entropy_backward"])
def test_spawn_and_forkserver_keep_threads(method, name):
    res = _run("start_method", method, name)
    for child in res["children"]:
        assert child["digest"] == res["parent"]
        assert not child["serial_after_fork"] and child["pool_started"]
        assert child["threads_for"] == 2
        if child["new_os_threads"] is not None:
            assert child["new_os_threads"] >= 1


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
@pytest.mark.parametrize("order", ["torch_first", "pyce_first"])
def test_fork_child_after_torch_threads(order):
    """torch's threads in the parent started the OpenMP pool pyce shares: serial children."""
    res = _run("torch", order)
    assert res["pyce_started_before_fork"] is False
    for child, parent in zip(res["children"], res["parent"]):
        assert child["digest"] == parent
        assert child["serial_after_fork"] and child["threads_for"] == 1


def test_fit_in_fork_child_after_parent_trained():
    res = _run("fit")
    assert res["children"] == [res["parent"]]


def test_cli_in_fork_child():
    res = _run("cli")
    (child,) = res["children"]
    assert child["code"] == 0
    assert "4096 x 1000" in child["output"]
    assert child["serial_after_fork"]


if __name__ == "__main__":
    scenario = globals()["scenario_" + sys.argv[1]]
    print(json.dumps(scenario(*sys.argv[2:])))
