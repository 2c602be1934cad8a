"""The CLI run with stderr on a pseudo-terminal, as a user's shell runs it (the progress tests)."""

import os
import pty
import subprocess
import sys

from sparsesim.progress import DELAY_ENV


def stderr_on_a_terminal(*args: str) -> str:
    """Run the CLI with stderr on a pseudo-terminal, the bar's delay 0 (a fast machine finishes
    within the default 1 s); what it drew there."""
    master, slave = pty.openpty()
    env = {**os.environ, DELAY_ENV: "0"}
    proc = subprocess.run([sys.executable, "-m", "sparsesim.cli", *args], stdout=subprocess.PIPE,
                          stderr=slave, timeout=600, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode("utf-8", "replace")
