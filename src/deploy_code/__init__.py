"""deploy-code: one YAML file to validated, placed, supervised, healthy processes.

The package is layered (see DESIGN.md): ``config`` → ``graph`` → ``scheduling`` (with ``resources`` and
``ports``) → ``runtime`` / ``health`` / ``state`` → ``supervisor`` → ``api`` → ``cli``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
