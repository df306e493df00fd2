"""tracecot on a local multi-node Ray cluster: throughput, files, memory, and exactly-once under actor kills.

    python bench/scale.py [--input ../shared/data/mbppplus/MbppPlus.jsonl] [--limit N] [--kill]
                          [--synthetic 100000,1000000 [--synthetic-only]] [--set KEY=VALUE ...]

Starts a cluster on this machine (`ray start`: a head and `--workers` nodes with the `executor` resource), runs
`tracecot run --address …` as a separate driver process, and reports from outside it:
- records/s and busy seconds per stage (the run report), actors per stage (`actors` in the run report, where
  the run records it), Parquet files and rows per file in records/ and rejected/;
- peak RSS of the driver and of each actor kind (processes titled `ray::<stage>`), sampled every 0.5 s;
- with `--kill`: one executor actor killed (SIGKILL) once the first rows are executed, one sink task once the
  first records are written;
  then every input row must be accounted for (read = input rows, items = written + rejected + already done)
  and no record id may appear twice;
- with `--synthetic`: the same on generated inputs of that many cheap calls each (`def f(x): return x + K`;
  2,000 distinct calls, the rest repeats that ingest rejects without running), to compare the driver's and the
  actors' peak memory between input sizes.
`--set` passes settings to the run (pool sizes: `ray.executors=3`, …). Exits 1 when a kill run loses or
duplicates a row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "mbppplus" / "MbppPlus.jsonl"
RAY = str(Path(sys.executable).parent / "ray")
TRACECOT = str(Path(sys.executable).parent / "tracecot")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
DISTINCT = 2_000  # distinct calls in a synthetic input; the rest are repeats


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A head and `workers` executor nodes, each its own raylet and temp dir; stopped with everything it started."""

    def __init__(self, workers: int, cpus: int) -> None:
        self.port = free_port()
        self.temp = tempfile.mkdtemp(prefix="tcscale-", dir="/tmp")
        self._start("--head", f"--port={self.port}", f"--num-cpus={cpus}", "--include-dashboard=false")
        for _ in range(workers):
            self._start(f"--address=127.0.0.1:{self.port}", f"--num-cpus={cpus}",
                        f"--resources={json.dumps({'executor': 100})}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, *args: str) -> None:
        temp = tempfile.mkdtemp(prefix="n-", dir=self.temp)
        subprocess.run([RAY, "start", *args, "--disable-usage-stats", f"--temp-dir={temp}",
                        f"--dashboard-agent-listen-port={free_port()}"], env=ENV, check=True, capture_output=True)

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: those naming its temp dir or port, and all their descendants (one pass
        over the process table)."""
        table = {process.pid: process for process in psutil.process_iter(["ppid", "cmdline"])}
        found = {pid for pid, process in table.items()
                 if self.temp in " ".join(process.info["cmdline"] or []) or f":{self.port}" in
                 " ".join(process.info["cmdline"] or [])}
        grew = True
        while grew:
            more = {pid for pid, process in table.items() if process.info["ppid"] in found} - found
            found |= more
            grew = bool(more)
        return [table[pid] for pid in found]

    def stop(self) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.kill()


class Memory(threading.Thread):
    """Peak RSS (MB) of the driver and of the cluster's `ray::` processes by kind (the title without the method
    it runs), and the processes seen of each kind, until `stop`. Beside RSS, the peak of its private part (RSS
    less shared pages): a Ray worker's RSS includes the object-store pages it maps, which are shared memory and
    belong to the store, not to the worker."""

    def __init__(self, driver: int, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.driver = psutil.Process(driver)
        self.cluster = cluster
        self.peaks: dict[str, float] = defaultdict(float)
        self.private: dict[str, float] = defaultdict(float)
        self.pids: dict[str, set[int]] = defaultdict(set)
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            for process in [self.driver, *self.cluster.processes()]:
                with contextlib.suppress(psutil.Error):
                    kind = self.kind(process)
                    if kind:
                        self.pids[kind].add(process.pid)
                        memory = process.memory_info()
                        self.peaks[kind] = max(self.peaks[kind], memory.rss / 2**20)
                        self.private[kind] = max(self.private[kind], (memory.rss - memory.shared) / 2**20)

    def kind(self, process: psutil.Process) -> str | None:
        if process.pid == self.driver.pid:
            return "driver"
        title = (process.cmdline() or [""])[0]
        if not title.startswith("ray::") or "IDLE" in title:
            return None
        return re.sub(r"\.\w+$", "", title.removeprefix("ray::").split(" ")[0])  # Executor).submit → Executor)

    def stop(self) -> None:
        self._done.set()
        self.join()


def kill_one(cluster: Cluster, part: str) -> str | None:
    """SIGKILL the busiest of the cluster's actors whose process title names `part` (the most CPU time so far:
    the one doing the work, not an idle one whose death would test nothing); the title killed, or None."""
    candidates = []
    for process in cluster.processes():
        with contextlib.suppress(psutil.Error):
            title = (process.info["cmdline"] or [""])[0]
            if title.startswith("ray::") and part in title:
                cpu = process.cpu_times()
                candidates.append((cpu.user + cpu.system, process.pid, title))
    if not candidates:
        return None
    _, pid, title = max(candidates)
    os.kill(pid, signal.SIGKILL)
    return title


def run(cluster: Cluster, source: Path, output: Path, limit: int | None, settings: list[str], kill: bool) -> dict:
    command = [TRACECOT, "run", "--input", str(source), "--output", str(output), "--address", cluster.address,
               "--set", "ray.executor_resource=executor", "--set", "storage.shared_filesystem=true",  # one machine
               *(a for s in settings for a in ("--set", s))]
    if limit:
        command += ["--limit", str(limit)]
    started = time.perf_counter()
    driver = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = Memory(driver.pid, cluster)
    memory.start()
    killed: dict[str, str | None] = {}
    log = []
    for line in driver.stdout:  # type: ignore[union-attr]
        log.append(line)
        print(line, end="", flush=True)  # the run's progress as it goes: a long run can be read while it runs
        executed = re.search(r"executed (\d+)", line)
        if kill and not killed.get("executor") and executed and int(executed.group(1)) > 0:
            killed["executor"] = kill_one(cluster, "(Executor)")  # while the pool still works
        if kill and not killed.get("sink") and _written(output) > 0:
            killed["sink"] = kill_one(cluster, "ParquetSink")  # tried again on the next line if none was found
    driver.wait()
    memory.stop()
    return {"code": driver.returncode, "seconds": time.perf_counter() - started, "log": "".join(log[-30:]),
            "peaks": dict(memory.peaks), "private": dict(memory.private),
            "actors": {k: len(v) for k, v in memory.pids.items()}, "killed": killed}


def _written(output: Path) -> int:
    return sum(1 for _ in (output / "records").glob("*.parquet")) if (output / "records").exists() else 0


def files(output: Path) -> dict:
    out = {}
    for folder in ("records", "rejected"):
        rows = [pq.ParquetFile(path).metadata.num_rows for path in sorted((output / folder).glob("*.parquet"))]
        out[folder] = {"files": len(rows), "rows": sum(rows), "median_rows": statistics.median(rows) if rows else 0,
                       "max_rows": max(rows, default=0)}
    return out


def exactly_once(output: Path, input_rows: int, report: dict) -> dict:
    ids: Counter[str] = Counter()
    for folder in ("records", "rejected"):
        if any((output / folder).glob("*.parquet")):
            ids.update(pads.dataset(output / folder, format="parquet").to_table(columns=["record_id"])
                       .column("record_id").to_pylist())
    funnel = report["funnel"]
    accounted = funnel["items"] == funnel["written_records"] + funnel["written_rejected"] + funnel["skipped_existing"]
    return {"duplicate_ids": sum(n - 1 for n in ids.values() if n > 1), "rows_read": funnel["rows_read"],
            "input_rows": input_rows, "every_item_accounted": accounted}


def synthetic(calls: int, folder: Path) -> Path:
    """`calls` cheap calls, 100 inputs per line: the first `DISTINCT` of them distinct (a function per line), the
    rest repeats of those, which ingest rejects (`duplicate_call`) without running them. Every size then runs the
    same sandboxed work, and what grows is the input the driver, ingest, the index and the sink see: running 1M
    distinct calls would take ~4 h on a 2-core machine."""
    path = folder / f"synthetic-{calls}.jsonl"
    with path.open("w") as out:
        for start in range(0, calls, 100):
            code = f"def f(x):\n    return x + {start % DISTINCT}\n"
            inputs = [str(i) for i in range(min(100, calls - start))]
            out.write(json.dumps({"id": f"s{start}", "code": code, "entry_point": "f", "inputs": inputs}) + "\n")
    return path


def measure(cluster: Cluster, name: str, source: Path, limit: int | None, settings: list[str], kill: bool) -> bool:
    output = Path(tempfile.mkdtemp(prefix=f"tcscale-{name}-", dir="/tmp"))
    result = run(cluster, source, output, limit, settings, kill)
    reports = sorted((output / "runs").glob("*.json"))
    if result["code"] != 0 or not reports:
        print(f"{name}: the run failed (exit {result['code']}):\n{result['log']}")
        return False
    report = json.loads(reports[-1].read_text())
    input_rows = min(limit or 1 << 62, sum(1 for _ in source.open()))
    check = exactly_once(output, input_rows, report)
    funnel = report["funnel"]
    print(f"\n== {name}: {input_rows} input rows, {funnel['items']} items, {result['seconds']:.1f} s, "
          f"{funnel['written_records'] / result['seconds']:.1f} records/s")
    print(f"busy s per stage: {report.get('stage_busy_s')}")
    print(f"actors per stage (run report): {report.get('actors', '(not recorded)')}")
    print(f"processes seen per kind: {result['actors']}")
    print(f"files: {files(output)}")
    print("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(result["peaks"].items())))
    print("peak private MB (RSS less shared pages): "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(result["private"].items())))
    ok = check["duplicate_ids"] == 0 and check["every_item_accounted"] and check["rows_read"] == input_rows
    print(f"killed: {result['killed'] if kill else 'none'}; {check}; {'OK' if ok else 'LOST OR DUPLICATED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=DATA)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--workers", type=int, default=2, help="executor nodes besides the head")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs each node declares")
    parser.add_argument("--kill", action="store_true", help="kill an executor actor and a sink task mid-run")
    parser.add_argument("--synthetic", default="", help="comma-separated call counts of generated inputs")
    parser.add_argument("--synthetic-only", action="store_true", help="skip the --input run")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    args = parser.parse_args()
    cluster = Cluster(args.workers, args.cpus)
    ok = True
    try:
        if not args.synthetic_only:
            ok &= measure(cluster, args.input.stem, args.input, args.limit, args.settings, args.kill)
        with tempfile.TemporaryDirectory() as folder:
            for calls in filter(None, args.synthetic.split(",")):
                source = synthetic(int(calls), Path(folder))
                ok &= measure(cluster, f"synthetic-{calls}", source, None,
                              [*args.settings, "directions=forward"], False)
    finally:
        cluster.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
