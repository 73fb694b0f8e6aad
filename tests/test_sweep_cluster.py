"""Sweeps on a real Ray cluster, all on 127.0.0.1: a head started as docs/cli.md says (token authentication on), a sweep
through ``--ray-address``, a worker killed mid-sweep, and the one-line errors of a wrong address or token."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dip_core import sweep
from dip_core.io import load_image, resize_max_side, save_png

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")  # the `ray` command of this Python
pytestmark = [
    pytest.mark.skipif(not sweep.ray_available(), reason="ray is not installed (requirements-sweep.txt)"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the head's worker processes"),
]


@dataclass
class Head:
    """A Ray head on loopback that this module started, and what a driver needs to reach it."""

    address: str
    env: dict[str, str]  # a driver's environment: this process's with the token's (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH)
    proc: subprocess.Popen
    log: Path


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_under(pid: int) -> dict[int, str]:
    """pid → command line (a Ray worker's is its title: ``ray::run_spec`` while it runs one) of every process
    below ``pid``."""
    children: dict[int, list[int]] = defaultdict(list)
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children[ppid].append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children[todo.pop()]:
            found[child] = cmdlines.get(child, "").strip()
            todo.append(child)
    return found


def socket_hosts(pids: list[int]) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* writes them) of every TCP socket the processes ``pids`` hold."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[len("socket:[") : -1])
    hosts = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                hosts.add(fields[1].rsplit(":", 1)[0])
    return hosts


def loopback(hex_host: str) -> bool:
    """127.0.0.0/8 (alone or IPv4-mapped in IPv6) or ::1, in /proc/net/tcp*'s hex."""
    if len(hex_host) == 8:
        return hex_host.endswith("7F")  # the address's first byte comes last
    return hex_host == "0" * 24 + "01000000" or (hex_host.startswith("0" * 16 + "FFFF0000") and hex_host.endswith("7F"))


def stop(proc: subprocess.Popen) -> None:
    """Stop the head this module started, and only it: ``ray start --block`` ends the processes it started on SIGTERM;
    whatever is left of its process group is killed. (``ray stop`` would end every Ray process on the machine.)"""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session below
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """``ray start --head`` on 127.0.0.1 with 2 CPUs and token authentication, its files in a temporary folder."""
    if not RAY.is_file():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    temp = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths under it must fit 107 characters
    token = temp / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no outer cluster, token or setting
    env.update(
        RAY_AUTH_MODE="token",  # token authentication, the token from the file below (docs/cli.md)
        RAY_AUTH_TOKEN_PATH=str(token),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # Ray binds and advertises 127.0.0.1, not this machine's outward address
        RAY_USAGE_STATS_ENABLED="0",
    )
    port = free_port()
    log = temp / "head.log"
    cmd = [str(RAY), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "2"]
    cmd += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp / "ray"), "--block"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=temp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-2000:]
        driver = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # the sweep sees to it
        yield Head(f"127.0.0.1:{port}", driver, proc, log)
    finally:
        stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster_imgs")
    img = load_image(ROOT / "assets" / "house256.png")[0]
    save_png(resize_max_side(img, 24)[0], folder / "a.png")
    save_png(resize_max_side(img[64:192, 64:192], 24)[0], folder / "b.png")
    return folder


def sweep_cmd(images: Path, out: Path, address: str, iters: int) -> list[str]:
    """The CLI's sweep of 2 images × λ ∈ {0, 1.4}, tiny, on the cluster at ``address``."""
    return [
        sys.executable,
        "-m",
        "dip_core",
        "sweep",
        "--task",
        "denoise",
        "--images",
        str(images),
        "--lipschitz",
        "0",
        "1.4",
        "--gaussian-sigma",
        "none",
        "--preset",
        "cpu",
        "--width",
        "8",
        "--iters",
        str(iters),
        "--every",
        str(iters // 2),
        "--device",
        "cpu",
        "--ray-address",
        address,
        "--out",
        str(out),
    ]


KEYS = {f"{image}__{variant}__s0" for image in ("a", "b") for variant in ("vanilla", "lam1.4")}


def test_a_sweep_runs_on_a_ray_head_on_loopback_through_ray_address(head, images, tmp_path):
    res = subprocess.run(
        sweep_cmd(images, tmp_path, head.address, 8),
        cwd=ROOT,
        env=head.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"4 runs, 0 already done, ray cluster {head.address}" in res.stderr
    rows = sweep.load_rows(tmp_path)
    assert sorted(r["key"] for r in rows) == sorted(KEYS)
    assert all(r["iterations"] == 8 and r["final_psnr"] is not None and r["device"] == "cpu" for r in rows)
    assert all((tmp_path / f"{key}.jsonl").is_file() for key in KEYS)  # the workers share this machine's disk
    hosts = socket_hosts([head.proc.pid, *processes_under(head.proc.pid)])
    assert hosts and all(loopback(h) for h in hosts), hosts  # the head, its raylet and workers: 127.0.0.1 only


def running_run(pid: int, out: Path) -> str | None:
    """The key of the run the process ``pid`` is in the middle of: the curve file ``out/<key>.jsonl`` it holds open."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                path = Path(os.readlink(fd))
                if path.parent == out.resolve() and path.suffix == ".jsonl" and path.name != "results.jsonl":
                    return path.stem
    return None


def test_a_worker_killed_mid_sweep_loses_no_row_and_writes_none_twice(head, images, tmp_path):
    """SIGKILL a worker in the middle of a run, after other rows are written: Ray runs that run again
    (``RAY_TASK_RETRIES``), the sweep ends with every row once, and the rows written before are untouched."""
    results = tmp_path / "results.jsonl"
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(sweep_cmd(images, tmp_path, head.address, 300), cwd=ROOT, env=head.env, stderr=err)
    try:
        deadline = time.monotonic() + 240
        while not sweep.load_rows(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        before = results.read_text()
        victim = key = None
        while key is None and proc.poll() is None and time.monotonic() < deadline:
            workers = [pid for pid, cmd in processes_under(head.proc.pid).items() if cmd.startswith("ray::run_spec")]
            victim, key = next(((pid, k) for pid in workers if (k := running_run(pid, tmp_path))), (None, None))
            time.sleep(0.02)
        assert victim, "no worker was in the middle of a run"
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert key not in before and 1 <= len(before.splitlines()) < len(KEYS)  # killed mid-run, mid-sweep
    keys = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert sorted(keys) == sorted(KEYS)  # every row, exactly once: the killed run's too, run again
    assert results.read_text().startswith(before)  # the rows written before the kill, intact
    assert all(r["iterations"] == 300 for r in sweep.load_rows(tmp_path))
    iters = [json.loads(line)["iter"] for line in (tmp_path / f"{key}.jsonl").read_text().splitlines()]
    assert iters == sorted(set(iters)) and iters[-1] == 300  # the killed run's curve, written again from its start


def one_line(res: subprocess.CompletedProcess) -> str:
    """The one line a failed command wrote on stderr (its exit status 2)."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    return lines[0]


#: docs/bad-input.md's rows for sweeps on a cluster (the two tests below)
RAY_ROWS = (
    "no Ray head at that address",
    "an address without a port",
    "`--ray-address` with `--no-ray`",
    "a cluster that wants a token, and no token",
    "the wrong token",
)


@pytest.mark.parametrize("token", ["none", "wrong"])
def test_a_missing_or_wrong_token_is_one_line_and_runs_nothing(head, images, tmp_path, token):
    env = dict(head.env)
    if token == "none":  # what a driver does unless told: an explicit address never sends the token
        del env["RAY_AUTH_MODE"], env["RAY_AUTH_TOKEN_PATH"]
    else:
        env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # RAY_AUTH_TOKEN comes before RAY_AUTH_TOKEN_PATH
    res = subprocess.run(
        sweep_cmd(images, tmp_path, head.address, 8), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    line = one_line(res)
    if token == "none":
        assert line.startswith(f"error: the Ray cluster at {head.address} requires a token: set RAY_AUTH_MODE=token")
    else:
        assert line.startswith(
            f"error: the Ray cluster at {head.address} refused this driver's token (from RAY_AUTH_TOKEN)"
        )
    assert "`ray get-auth-token` on the head prints it" in line
    assert not sweep.load_rows(tmp_path)


def test_a_wrong_ray_address_is_one_line_with_the_next_step(images, tmp_path):
    """No head at that port, or no port: one line at once, for the sweep and for the reproduction harness."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    run = lambda cmd: subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    refused = f"error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused (start it with `ray start"
    assert one_line(run(sweep_cmd(images, tmp_path, f"127.0.0.1:{port}", 8))).startswith(refused)
    assert "is not HOST:PORT" in one_line(run(sweep_cmd(images, tmp_path, "127.0.0.1", 8)))
    assert "give one of them" in one_line(run([*sweep_cmd(images, tmp_path, f"127.0.0.1:{port}", 8), "--no-ray"]))
    report = [sys.executable, "-m", "benchmarks", "report", "--task", "denoise", "--images", str(images / "a.png")]
    report += ["--iters", "4", "--every", "2", "--width", "8", "--device", "cpu", "--out", str(tmp_path / "report")]
    assert one_line(run([*report, "--ray-address", f"127.0.0.1:{port}"])).startswith(refused)
    assert not sweep.load_rows(tmp_path) and not (tmp_path / "report" / "report.md").exists()


def test_a_run_lost_on_ray_is_named_in_a_few_words():
    """What the sweep's last line says of a run Ray gave up on: its key, the exception's type and first line, and
    for a worker without this package, the next step."""

    class Lost(Exception):  # as Ray's RayTaskError: the run's own exception in ``cause``
        cause = ModuleNotFoundError("No module named 'dip_core'\nmore")

    assert sweep.run_failure("a__vanilla__s0", Lost()) == (
        "a__vanilla__s0: ModuleNotFoundError: No module named 'dip_core' "
        "(every node needs this repository: pip install . in the Python that runs Ray)"
    )
    crashed = RuntimeError("The worker died unexpectedly while executing this task.\nCheck the logs.")
    assert sweep.run_failure("k", crashed) == "k: RuntimeError: The worker died unexpectedly while executing this task."
