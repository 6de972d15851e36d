"""`python -m kexue …` is the `kexue` command (also what `torchrun -m kexue train …` runs)."""

from kexue.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
