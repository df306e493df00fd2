"""The reference pipeline's tracing step, as the baseline the benches compare with.

Per call: the problem's code with its entry point decorated by `pysnooper.snoop(output=<trace file>, depth=1)`,
written to a script that prints the result, run by a fresh `python script.py` (the reference's way), with a
timeout. Needs `pip install pysnooper`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_SCRIPT = '''import pysnooper
trace_file = "trace.log"
{code}
print("FINAL_RESULT:", {entry_point}({args}))
'''


def script(code: str, entry_point: str, args: str) -> str:
    """The script for one call: the entry point's top-level `def` decorated, as the reference inserts it."""
    decorated = re.sub(rf"^def {re.escape(entry_point)}\(", f"@pysnooper.snoop(output=trace_file, depth=1)\n"
                       f"def {entry_point}(", code, count=1, flags=re.M)
    return _SCRIPT.format(code=decorated, entry_point=entry_point, args=args)


def snoop_call(code: str, entry_point: str, args: str, timeout_s: float = 5.0) -> str:
    """Run one call the reference's way in its own scratch directory: "ok", "error" or "timeout"."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "script.py"
        path.write_text(script(code, entry_point, args))
        try:
            done = subprocess.run([sys.executable, str(path)], cwd=scratch, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return "timeout"
    return "ok" if done.returncode == 0 else "error"


def snoop_all(calls: list[tuple[str, str, str]], workers: int, timeout_s: float = 5.0) -> list[str]:
    """Every (code, entry point, args) call the reference's way, `workers` at a time; outcomes in order."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda call: snoop_call(*call, timeout_s=timeout_s), calls))
