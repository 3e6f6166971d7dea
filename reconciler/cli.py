"""The command line: parse, dispatch, and map ReconcilerError to exit codes in one place."""

from __future__ import annotations

import click

from reconciler import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kcr")
def cli() -> None:
    """kcr: Kibana alerting connectors as code."""


def main() -> None:
    cli()
