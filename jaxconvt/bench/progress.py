"""A progress bar on stderr (tqdm when installed)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar on stderr: tqdm when installed, plain text otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.start = time.perf_counter()
        self._bar = None
        self._tty = sys.stderr.isatty()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, file=sys.stderr, unit="step", leave=False)

    def step(self, what: str) -> None:
        if not self.enabled:
            return
        if self.done:
            if self._bar is not None:
                self._bar.update(1)
        self.done += 1
        if self._bar is not None:
            self._bar.set_description(what)
            return
        width = 24
        filled = int(width * (self.done - 1) / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.0f}s {what}"
        if self._tty:
            sys.stderr.write("\r" + line[:110].ljust(110))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            sys.stderr.write("\r" + " " * 110 + "\r")
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"bench: {self.total} steps in {elapsed:.0f} s\n")
        sys.stderr.flush()
