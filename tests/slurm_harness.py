"""A private one-node SLURM for workflow tests: munged, slurmctld and slurmd started from a temp dir.

Everything lives under one directory (config, state, spool, logs, the munge key and socket); clients find it
through `SLURM_CONF` (see `LocalSlurm.env()`). The slurm executor's jobstep strips every SLURM_* variable except
the job's identity (SLURM_CONF included) before its inner `srun`, so that srun only finds the configuration at the
compiled-in default path: the harness links /etc/slurm/slurm.conf to its own file while it runs (only when no
real configuration is there) and removes the link again. One harness instance runs at a time on a machine. The node advertises fake GPUs: gres.conf points at character devices made with
`mknod` (slurmd only checks that the files exist), so `sbatch --gpus=N` is accepted on a machine without GPUs.
The node's CPUs and memory are declared larger than the machine (`SlurmdParameters=config_overrides`) so the
production profile's real requests can be submitted unchanged; the jobs then simply share the real cores.

Partitions are named like the profile's placeholders (`cpu`, `gpu`), so the profile's partition choice is
exercised too. Accounting is off: run Snakemake with `--slurm-no-account --slurm-status-command squeue`.

Needs root (the daemons run as root and the fake devices need mknod) and Debian's slurm-wlm + munge, which
`ensure_installed()` installs through `.ci/apt-install.sh` when they are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
PACKAGES = ("slurm-wlm", "munge")


def ensure_installed() -> None:
    """Install slurm-wlm and munge when a binary is missing (root only; no-op when present)."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    subprocess.run(["bash", str(REPO / ".ci/apt-install.sh"), *PACKAGES], check=True)


def skip_reason() -> str | None:
    """Why a real SLURM cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a local SLURM needs root (slurmctld/slurmd run as root, fake GPU devices need mknod); run as root"
    try:
        ensure_installed()
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"could not install {' '.join(PACKAGES)} ({exc}); install them with apt-get"
    return None


def _which(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else None)
    if not found:
        raise RuntimeError(f"{name} not found; apt-get install -y {' '.join(PACKAGES)}")
    return found


def _free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class SlurmStartError(RuntimeError):
    pass


class LocalSlurm:
    """`with LocalSlurm(tmp) as slurm: subprocess.run([...], env=slurm.env())`."""

    def __init__(self, root: str | os.PathLike, gpus: int = 8, gpu_type: str = "h100", cpus: int = 128,
                 memory_mb: int = 2_000_000, partitions: tuple[str, ...] = ("cpu", "gpu")):
        self.root = Path(root)
        self.gpus, self.gpu_type, self.cpus, self.memory_mb = gpus, gpu_type, cpus, memory_mb
        self.partitions = partitions
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.processes: list[subprocess.Popen] = []
        self.devices: list[Path] = []
        self.linked_conf: Path | None = None

    # ------------------------------------------------------------------ set-up
    def _write_munge_key(self) -> Path:
        key = self.root / "munge" / "munge.key"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        subprocess.run([_which("mungekey"), "--create", "--force", f"--keyfile={key}"], check=True,
                       capture_output=True)
        key.chmod(0o600)
        return key

    def _make_fake_gpus(self) -> str:
        """Character devices for gres.conf File=; in our dir when the filesystem allows, else under /dev."""
        for base in (self.root / "dev", Path("/dev")):
            base.mkdir(exist_ok=True)
            made = []
            try:
                for i in range(self.gpus):
                    dev = base / f"repabench-fakegpu{os.getpid()}-{i}"
                    if not dev.exists():
                        os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
                    made.append(dev)
            except OSError:
                for dev in made:
                    dev.unlink(missing_ok=True)
                continue
            self.devices = made
            return f"{base}/repabench-fakegpu{os.getpid()}-[0-{self.gpus - 1}]"
        raise SlurmStartError("could not create fake GPU device files with mknod")

    def _write_config(self, gpu_files: str) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        for sub in ("state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        r = self.root
        lines = [
            "ClusterName=repabench-test",
            f"SlurmctldHost={self.host}",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MinJobAge=3600",
            "KillWait=5",
            "InactiveLimit=0",
            "SchedulerParameters=sched_interval=1",
            "GresTypes=gpu",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:{self.gpu_type}:{self.gpus} "
            "State=UNKNOWN",
        ]
        for i, name in enumerate(self.partitions):
            default = "YES" if i == 0 else "NO"
            lines.append(f"PartitionName={name} Nodes={self.host} Default={default} MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "gres.conf").write_text(f"NodeName={self.host} Name=gpu Type={self.gpu_type} File={gpu_files}\n")
        (self.root / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")

    def _link_default_conf(self) -> None:
        default = Path("/etc/slurm/slurm.conf")
        if default.exists() and not default.is_symlink():
            raise SlurmStartError(f"{default} exists (a real SLURM is configured here); the test harness will not "
                                  "replace it: run the tests on a machine without a SLURM configuration")
        if default.is_symlink():
            target = Path(os.readlink(default))
            if target.exists() and target != self.conf:
                raise SlurmStartError(f"{default} links to {target}: another test SLURM is running; wait for it")
            default.unlink()
        default.parent.mkdir(parents=True, exist_ok=True)
        default.symlink_to(self.conf)
        self.linked_conf = default

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_")) and v != "SLURM_CONF"]:
            env.pop(var)
        return env

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        log.close()
        self.processes.append(proc)
        return proc

    def _wait(self, what: str, check, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise SlurmStartError(f"{proc.args[0]} exited with {proc.returncode} while waiting for {what}; "
                                          f"see {self.root}/log\n{self.logs()}")
            if check():
                return
            time.sleep(0.3)
        raise SlurmStartError(f"timed out waiting for {what}; see {self.root}/log\n{self.logs()}")

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env(), capture_output=True, text=True, timeout=30)

    def start(self) -> "LocalSlurm":
        self.root.mkdir(parents=True, exist_ok=True)
        key = self._write_munge_key()
        self._write_config(self._make_fake_gpus())
        self._link_default_conf()
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={self.root}/munge/munged.pid",
                               f"--log-file={self.root}/log/munged.log", f"--seed-file={self.root}/munge/seed"])
        self._wait("munged's socket", self.munge_socket.exists)
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self._run(_which("scontrol"), "ping").stdout.count("UP") > 0)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.host, "-f", str(self.conf)])
        self._wait("the node to become idle", self._node_idle, timeout=60)
        return self

    def _node_idle(self) -> bool:
        state = self._run(_which("sinfo"), "-h", "-N", "-o", "%T").stdout.split()
        if any(s.startswith(("drain", "down")) for s in state):
            self._run(_which("scontrol"), "update", f"nodename={self.host}", "state=resume")
        return bool(state) and all(s in {"idle", "mixed", "allocated"} for s in state)

    # --------------------------------------------------------------- queries
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge keeps finished ones), as `scontrol show job -o` fields."""
        out = self._run(_which("scontrol"), "show", "job", "-o").stdout
        jobs = []
        for line in out.splitlines():
            if not line.strip() or line.startswith("No jobs"):
                continue
            fields: dict[str, str] = {}
            key = None
            for token in line.split(" "):
                if "=" in token and not token.startswith("="):
                    key, _, value = token.partition("=")
                    fields[key] = value
                elif key and token:  # values with spaces (Command, Comment) continue on the next token
                    fields[key] += " " + token
            jobs.append({k: v.strip() for k, v in fields.items()})
        return jobs

    def logs(self, tail: int = 30) -> str:
        parts = []
        for file in sorted((self.root / "log").glob("*")):
            lines = file.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {file.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    # --------------------------------------------------------------- tear-down
    def stop(self) -> None:
        if self.conf.exists() and self.processes:
            try:
                self._run(_which("scancel"), "--full", "--user=root")
            except (subprocess.SubprocessError, OSError, RuntimeError):
                pass
        for proc in reversed(self.processes):  # slurmd, slurmctld, then munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.processes.clear()
        for dev in self.devices:
            dev.unlink(missing_ok=True)
        self.devices.clear()
        if self.linked_conf is not None and self.linked_conf.is_symlink():
            self.linked_conf.unlink()
        self.linked_conf = None

    def __enter__(self) -> "LocalSlurm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
