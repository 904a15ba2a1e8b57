"""colorize/console.py: the progress bar's plain-line mode and time-left formatting."""

import io

from colorize.console import Progress, eta


def test_eta_reads_at_a_glance():
    assert [eta(s) for s in (0, 44.6, 60, 725, 3600 * 3 + 1200, -5)] == [
        "0s", "45s", "1m00s", "12m05s", "3h20m", "0s"]


def test_plain_lines_off_a_terminal_every_interval_and_at_the_end():
    stream = io.StringIO()  # not a TTY, as in a pipe or a job's logs
    with Progress(10, "colorizing", stream=stream, interval_s=0) as progress:
        progress.update(4, failed=0)
        progress.update(6, failed=1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("colorizing: 4/10 img (40%), ") and lines[0].endswith(", failed 0")
    assert lines[-1].startswith("colorizing: 10/10 img (100%), ") and " 0s left" in lines[-1]
    quiet = io.StringIO()
    with Progress(10, "colorizing", stream=quiet, interval_s=3600) as progress:
        progress.update(5)  # within the interval: no line yet
        assert quiet.getvalue() == ""
    assert quiet.getvalue().count("\n") == 1  # the closing line


def test_a_terminal_gets_a_bar():
    stream = io.StringIO()
    with Progress(3, "colorizing", stream=stream, tty=True) as progress:
        progress.update(3)
    assert "colorizing: 100%" in stream.getvalue() and "3/3" in stream.getvalue()
