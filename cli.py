"""Run the distill CLI from a checkout: `python cli.py --help`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "src"))

from distill.cli import app  # noqa: E402

if __name__ == "__main__":
    app()
