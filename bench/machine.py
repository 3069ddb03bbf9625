"""What the benchmarks say of the machine they ran on."""
from pathlib import Path


def cpu_model():
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" without one)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"
