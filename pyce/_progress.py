"""The one progress printer and the one epoch-line format of pyce.

Used by the trainer (`fit(verbose=1)` on a terminal), the command line (one
epoch line per epoch through a pipe) and the data-set downloads, so the same
thing looks the same wherever it is printed.
"""
import sys
import time


def format_epoch(rec, epochs):
    """One line for one finished epoch (a History record), e.g.

    ``epoch  1/30  loss 0.7389  acc  77.40%  test loss 0.2687  test acc  93.04%  0.01 s``

    rec : dict with epoch, train_loss, train_accuracy, test_loss, test_accuracy
        (None without a test set) and seconds.
    epochs : int, the total number of epochs (sets the width of the counter).
    Returns the line, without a newline.
    """
    parts = [f"epoch {rec['epoch']:>{len(str(epochs))}}/{epochs}",
             f"loss {rec['train_loss']:.4f}",
             f"acc {100 * rec['train_accuracy']:6.2f}%"]
    if rec.get("test_loss") is not None:
        parts += [f"test loss {rec['test_loss']:.4f}",
                  f"test acc {100 * rec['test_accuracy']:6.2f}%"]
    parts.append(f"{rec['seconds']:.2f} s")
    return "  ".join(parts)


class ProgressBar:
    """A one-line text progress bar redrawn in place with '\\r', at most every 0.1 s.

    total : int or None, the count at completion (None: no bar, just the count).
    label : str printed before the bar.
    file : a text stream (default sys.stderr).
    width : int, characters of the bar.
    unit : '' (counts) or 'B' (bytes, shown in MB).
    """

    def __init__(self, total, label="", *, file=None, width=30, unit=""):
        self.total, self.label, self.width, self.unit = total, label, width, unit
        self.file = file if file is not None else sys.stderr
        self.done = 0
        self.note = ""
        self._last = 0.0
        self._drawn = 0

    def _fmt(self, n):
        return f"{n / 1e6:.1f} MB" if self.unit == "B" else str(n)

    def update(self, n=1, note=None):
        """Advance by n; `note` (e.g. 'loss 0.1234') is shown after the bar."""
        self.done += n
        if note is not None:
            self.note = note
        now = time.monotonic()
        if now - self._last >= 0.1 or (self.total and self.done >= self.total):
            self._last = now
            self._draw()

    def _write_line(self, text):
        pad = " " * max(0, self._drawn - len(text))
        self.file.write("\r" + text + pad)
        self._drawn = len(text)
        self.file.flush()

    def _draw(self):
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * self.width)
            text = (f"{self.label} [{bar:<{self.width}}] {frac:4.0%} "
                    f"{self._fmt(self.done)}/{self._fmt(self.total)}")
        else:
            text = f"{self.label} {self._fmt(self.done)}"
        self._write_line(text + (f"  {self.note}" if self.note else ""))

    def close(self, final_line=None):
        """End the bar's line; `final_line` replaces the bar (e.g. the epoch line)."""
        if final_line is None:
            self._draw()
        else:
            self._write_line(final_line)
        self.file.write("\n")
        self.file.flush()
