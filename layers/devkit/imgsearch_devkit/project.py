"""The imgsearch checkout the developer kit works on, and the settings its commands read.

The local stack needs the checkout's ``template.yaml``, ``statemachine/``, ``functions/`` and
``models/``. It is found as git finds a repository: ``IMGSEARCH_PROJECT`` if set, else the first
folder from the working directory upwards that holds ``template.yaml`` and ``functions/``, else
the checkout this package was installed from (an editable install)::

    root = project_root()             # Path("/home/me/imgsearch")
    settings = operator_settings()    # Settings.from_env(), the demo bundle by default
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from imgsearch.core.config import Settings

PROJECT_VARIABLE = "IMGSEARCH_PROJECT"
MARKERS = ("template.yaml", "functions")


class ProjectNotFound(RuntimeError):
    """No imgsearch checkout around the working directory."""


def is_project(folder: Path) -> bool:
    return all((folder / marker).exists() for marker in MARKERS)


def project_root(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(PROJECT_VARIABLE):
        root = Path(env[PROJECT_VARIABLE]).expanduser().resolve()
        if not is_project(root):
            raise ProjectNotFound(
                f"{PROJECT_VARIABLE}={root} holds no template.yaml and functions/"
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    # An editable install: layers/devkit/imgsearch_devkit/project.py -> the checkout.
    installed_from = Path(__file__).resolve().parents[3]
    if is_project(installed_from):
        return installed_from
    raise ProjectNotFound(
        f"no imgsearch checkout (template.yaml and functions/) in {here} or above: run from the "
        f"checkout or set {PROJECT_VARIABLE}"
    )


def operator_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The library settings of an operator command: the environment's, with the checkout in
    place of the image's task root (so the default model is the checkout's demo bundle)."""
    env = os.environ if environ is None else environ
    if env.get("IMGSEARCH_MODEL_URI") or env.get("LAMBDA_TASK_ROOT"):
        return Settings.from_env(env)
    return Settings.from_env({**env, "LAMBDA_TASK_ROOT": str(project_root(environ=env))})
