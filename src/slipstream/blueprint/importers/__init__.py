"""Importers: a Procfile or a fly.toml in, an equivalent render.yaml out. Pure.

``build_from_procfile`` and ``build_from_fly_toml`` return an :class:`Imported` (the render.yaml
data plus notes for everything without an equivalent); ``render_imported`` writes it as YAML with
those notes as comments at the top. What has an equivalent is kept: release commands become
``preDeployCommand``, health checks ``healthCheckPath``, machine sizes ``memoryLimitMB`` (a
slipstream extension), a minimum machine count ``numInstances``, volumes a ``disk``. A native
runtime is guessed from each process's command (``node``/``npm``/``yarn`` -> node, ``gunicorn`` ->
python, ``bundle`` -> ruby, ...), then from the files next to the input. The output validates as
written (the tests parse every importer output back); nothing is dropped without a note.

Modules: ``common`` (the result, names, the YAML writer), ``runtimes`` (guessing a runtime and
its build command), ``procfile`` and ``flytoml`` (one importer each).
"""

from __future__ import annotations

from slipstream.blueprint.importers.common import Imported, render_imported
from slipstream.blueprint.importers.flytoml import build_from_fly_toml
from slipstream.blueprint.importers.procfile import build_from_procfile
from slipstream.blueprint.importers.runtimes import build_command, runtime_of_command, runtime_of_files

__all__ = [
    "Imported",
    "build_command",
    "build_from_fly_toml",
    "build_from_procfile",
    "render_imported",
    "runtime_of_command",
    "runtime_of_files",
]
