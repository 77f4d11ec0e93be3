"""_progress.py — a one-line progress bar on stderr for long Python-side
jobs (record): rows done / total, rate in rows/s and ETA. Drawn only when
stderr is a terminal (enabled=None) or when forced (enabled=True); quiet
otherwise, so logs and pipes get nothing."""

import sys
import time


def _fmt_time(s):
    s = int(max(0, s))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    """Progress(total, label, enabled): update(rows) after each batch,
    close() at the end (or use as a context manager). total may be None
    (unknown): then only rows and rate are shown."""

    WIDTH = 24          # bar cells
    MIN_INTERVAL = 0.1  # seconds between redraws

    def __init__(self, total=None, label="", enabled=None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = bool(enabled)
        self.total, self.label, self.done = total, label, 0
        self.start = self._last = time.monotonic()
        self._drawn = None  # rows shown by the last draw

    def update(self, rows):
        self.done += rows
        now = time.monotonic()
        if self.enabled and (now - self._last >= self.MIN_INTERVAL or
                             (self.total is not None and self.done >= self.total)):
            self._last = now
            self._draw(now)

    def _draw(self, now):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        head = f"{self.label}: " if self.label else ""
        if self.total:
            frac = min(self.done / self.total, 1.0)
            fill = int(frac * self.WIDTH)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            line = (f"{head}[{'#' * fill}{'.' * (self.WIDTH - fill)}] "
                    f"{self.done}/{self.total} rows  {rate:.1f} rows/s  ETA {_fmt_time(eta)}")
        else:
            line = f"{head}{self.done} rows  {rate:.1f} rows/s  {_fmt_time(elapsed)}"
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = self.done

    def close(self):
        if self.enabled:
            if self._drawn != self.done:
                self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
