"""Run the distill CLI from a checkout without installing it: `python cli.py --help`."""
from distill.cli import app

if __name__ == "__main__":
    app()
