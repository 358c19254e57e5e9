"""``inrkit plugins``: what is installed, from which distribution, and what failed to load."""

from __future__ import annotations

import json
import warnings
from typing import Any

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Also list every plugin module with the hooks it implements.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List installed plugins: name, kind, providing distribution and version."""
    from inrkit.plugins import get_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below instead
        registry = get_registry()
    entries = [
        {"name": e.name, "kind": e.kind, "distribution": e.distribution, "version": e.version, "plugin": e.plugin}
        for e in registry.entries()
    ]
    failures = [f.__dict__ for f in registry.failures]
    if as_json:
        payload: dict[str, Any] = {"plugins": entries, "failures": failures, "conflicts": registry.conflicts()}
        if show_all:
            payload["modules"] = registry.plugins()
        click.echo(json.dumps(payload, indent=2))
        return
    header = {"kind": "kind", "name": "name", "distribution": "distribution", "version": "version", "plugin": "entry point"}
    cols = ["kind", "name", "distribution", "version", "plugin"]
    widths = {c: max(len(str(r[c])) for r in [header, *entries]) for c in cols}
    for row in [header, *entries]:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in cols).rstrip())
    if show_all:
        click.echo("\nplugin modules (entry point, distribution, hooks):")
        for module in registry.plugins():
            click.echo(f"  {module['plugin']}  {module['distribution']} {module['version']}  {', '.join(module['hooks'])}")
    for f in registry.failures:
        click.echo(f"failed: {f.describe()}", err=True)
    for message in registry.conflicts():
        click.echo(f"conflict: {message}", err=True)


COMMANDS = [plugins]
