"""Files the package needs besides its modules: the dashboard's pages and the config presets.

In a source checkout they are the repository's ``app/`` and ``configs/``; a wheel carries them inside the
package as ``drkd_viz/app`` and ``drkd_viz/configs`` (pyproject.toml maps them there). Code asks here, never
builds the path itself.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _located(name: str) -> Path:
    packaged = PACKAGE / name
    return packaged if packaged.is_dir() else PACKAGE.parent / name


def app_dir() -> Path:
    """The Streamlit dashboard's folder (Home.py, views/, _shared/)."""
    return _located("app")


def app_entry() -> Path:
    """The dashboard's entry script, what ``streamlit run`` is given."""
    return app_dir() / "Home.py"


def configs_dir() -> Path:
    """The config presets (demo/, coco-paper/): the base YAML files the pipeline starts from."""
    return _located("configs")
