"""diagnose's countdown, driven by the progress messages diagnose() sends (no root)."""

from __future__ import annotations

import io
import time

from vnetdiag.cli.diagnose import Countdown


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_log_counts_down_whole_seconds_between_the_probe_and_the_path():
    log = io.StringIO()
    c = Countdown(log)
    c.say("probe tcp-rr x16 from a to b (198.51.100.3) for 1 s")
    c.start(1.2)
    _wait_for(lambda: "window over" in log.getvalue())
    c.stop()
    c.say("path a -> b: eth0 -> eth0")
    lines = log.getvalue().splitlines()
    assert lines[0] == "diagnose: probe tcp-rr x16 from a to b (198.51.100.3) for 1 s"
    assert lines[-2:] == ["diagnose: window over, waiting for the last transactions",
                          "diagnose: path a -> b: eth0 -> eth0"]
    # One line a second, whole seconds, counting down (how many depends on scheduling).
    left = [int(line.split()[1]) for line in lines[1:-2]]
    assert left and left == sorted(set(left), reverse=True) and left[0] <= 2 and left[-1] >= 1
    assert all(line.endswith(" s left in the window") for line in lines[1:-2])


def test_a_terminal_line_is_redrawn_and_cleared_before_other_messages():
    tty = _Tty()
    c = Countdown(tty, tick_s=0.01)
    c.start(0.5)
    _wait_for(lambda: tty.getvalue().count("s left") >= 3)
    c.say("capturing on b:eth0")  # a message during the window: on its own line
    c.stop()
    text = tty.getvalue()
    frames = [f for f in text.split("\r\x1b[K") if f]
    lefts = [float(f.split()[-3]) for f in frames if f.endswith("s left")]
    assert lefts == sorted(lefts, reverse=True) and lefts[0] <= 0.5
    assert "\r\x1b[Kdiagnose: capturing on b:eth0\n" in text
    assert text.endswith(("\n", "\r\x1b[K"))  # stop() leaves no half-drawn countdown behind
