"""kexue: the systems of Su Jianlin's blog *Scientific Spaces* (kexue.fm) as tested, reproducible
PyTorch code.

`import kexue` stays light: sub-packages are imported where they are used (style rule 14).
"""

__version__ = "0.1.0"
