"""The ``drkd-viz`` Typer app, its global options and the entry point that turns user errors into one clear
message (the commands register themselves on ``app`` from the modules beside this one)."""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer

from drkd_viz.errors import UserError

app = typer.Typer(
    name="drkd-viz",
    help="Teach, run and analyse Dual Relation Knowledge Distillation (DRKD) for object detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"drkd-viz {metadata.version('drkd_viz')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Teach, run and analyse Dual Relation Knowledge Distillation (DRKD) for object detection."""


def main() -> None:
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except OSError as exc:  # a path that cannot be read or written: which one and why, not a traceback
        where = f" {exc.filename}" if exc.filename else ""
        typer.secho(
            f"error: cannot use{where}: {exc.strerror or exc}. Check that the path is right, that its parent folder "
            "exists (for an output) and that you may write there.",
            err=True,
            fg=typer.colors.RED,
        )
        sys.exit(2)
