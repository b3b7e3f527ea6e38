"""The fault suite prints its table at the end of the run (and writes it to var/faults/)."""

from pathlib import Path

from tests.faults.harness import ROWS, table


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    lines = table(ROWS)
    terminalreporter.write_sep("=", "fault suite")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path("var/faults/table.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
