"""``python -m opslib.sandbox``: the sandbox command group, including ``serve``."""

from opslib.sandbox._cli import cli

if __name__ == "__main__":
    cli(prog_name="python -m opslib.sandbox")
