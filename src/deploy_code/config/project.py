"""The loaded project: the validated spec plus where it came from.

A :class:`Project` is what every layer above ``config`` receives. It is immutable: the spec is a
frozen pydantic model, the env_file variables are read-only mappings, and paths are absolute.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy_code.config.model import ProjectSpec, ServiceSpec
from deploy_code.config.source import SourceMap
from deploy_code.errors import Location

__all__ = ["Project", "state_dir_for"]


def state_dir_for(base_dir: Path, setting: str) -> Path:
    """The absolute state directory for a ``settings.state_dir`` value (relative to ``base_dir``)."""
    return Path(os.path.normpath(base_dir / setting))


@dataclass(frozen=True, slots=True)
class Project:
    """A validated configuration file.

    Attributes:
        spec: the file as frozen models.
        path: absolute path of the file.
        base_dir: its directory; relative ``working_dir``, ``env_file`` and ``state_dir`` resolve here.
        state_dir: ``base_dir / spec.settings.state_dir``, absolute.
        env_files: service name -> merged variables of its env_file(s), read at load time (every
            service has an entry, empty when it names no env_file).
        source: positions of the file's values, for diagnostics raised after loading.
    """

    spec: ProjectSpec
    path: Path
    base_dir: Path
    state_dir: Path
    env_files: Mapping[str, Mapping[str, str]]
    source: SourceMap

    @property
    def name(self) -> str:
        """The project name (``name:`` in the file)."""
        return self.spec.name

    @property
    def services(self) -> Mapping[str, ServiceSpec]:
        """The services by name, in file order."""
        return self.spec.services

    def locate(self, *path: str | int) -> Location:
        """Where ``path`` is written, e.g. ``locate("services", "api", "depends_on", "kv")``.

        Falls back to the nearest parent with a known position, then to the file alone.
        """
        return self.source.locate(*path)
