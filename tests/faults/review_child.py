"""A second process for the fault tests (not a test module): labels cells of a case folder through
ReviewSession, optionally killing itself (SIGKILL) at a chosen point inside a save.

python review_child.py FOLDER PREFIX COUNT [KILL_POINT]
  KILL_POINT: "<function>:<n>" - SIGKILL just before the n-th call of os.<function> (fsync, replace) or
  "write:<n>" - after writing half the bytes of the n-th temporary file write, during the last label.
"""
import os
import signal
import sys
import time
from pathlib import Path

from leukviewer.core.review.session import ReviewSession


def arm(point: str) -> None:
    name, n = point.split(":")
    n = int(n)
    calls = {"count": 0}

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if name == "write":
        real = os.fdopen

        def fdopen(fd, mode="r", *a, **k):
            f = real(fd, mode, *a, **k)
            if "w" not in mode:
                return f
            real_write = f.write

            def write(data):
                calls["count"] += 1
                if calls["count"] == n:
                    real_write(data[:len(data) // 2])
                    f.flush()
                    die()
                return real_write(data)
            f.write = write
            return f
        os.fdopen = fdopen
        return
    real = getattr(os, name)

    def hooked(*a, **k):
        calls["count"] += 1
        if calls["count"] == n:
            die()
        return real(*a, **k)
    setattr(os, name, hooked)


def main() -> None:
    folder, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    start_at = float(os.environ.get("START_AT", "0"))   # two processes start labelling at the same moment
    while time.time() < start_at:
        time.sleep(0.005)
    session = ReviewSession.open(folder, {"name": "m", "version": "1", "sha256": "a" * 64})
    for i in range(count):
        if i == count - 1 and len(sys.argv) > 4:
            arm(sys.argv[4])
        session.set_label(f"{prefix}#{i}", "ALL" if i % 2 else "HEM", "ALL", f"reviewer {prefix}")
        print(f"saved {prefix}#{i}", flush=True)
        time.sleep(0.001)


if __name__ == "__main__":
    main()
