"""Which value each serve setting takes, and from where: flag > environment > file > default.

The environment is read by pydantic-settings (`PALLET_` + the setting's name in capitals);
`SAGEMAKER_BIND_TO_PORT` also gives the port, below `PALLET_PORT`. The file is the `serve:`
section of a bundle's `pallet.yaml` (and its `models`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pydantic_settings import EnvSettingsSource

from pallet.errors import PalletError
from pallet.settings.serve import DURATION, ENV_PREFIX, MILLISECONDS, ServeConfig, SettingError, check_ui, is_secret
from pallet.units import format_duration
from pallet.urls import redact

SAGEMAKER_PORT = "SAGEMAKER_BIND_TO_PORT"


@dataclass
class Layer:
    """Values for some settings, all from one place: `label` says which ('flag', 'env', 'file' or 'default')."""

    label: str
    values: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # setting -> how the user wrote it: --workers, PALLET_WORKERS
    path: str | None = None  # the file, for a file's layer

    def where(self, name: str) -> str:
        return f"{self.label} {self.names[name]}" if name in self.names else self.label

    def source(self, name: str) -> str:
        """How a message names where this layer's value of `name` was given."""
        if self.path is not None:
            return f"{self.path}: {'models' if name == 'models' else 'serve.' + name}"
        return self.names.get(name, name)


@dataclass
class Resolved:
    config: ServeConfig
    origins: dict[str, str]  # setting -> where its value came from, e.g. 'flag --workers', 'default'


def flag_of(name: str) -> str:
    """The command-line flag of a setting: --max-batch-size for max_batch_size."""
    extra = ServeConfig.model_fields[name].json_schema_extra or {}
    return extra.get("flag") or "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flags_layer(values: dict[str, Any]) -> Layer:
    """What was given on the command line; a flag left out is None (or an empty list) and is not here."""
    given = {name: value for name, value in values.items() if value is not None and value != [] and value != ()}
    return Layer("flag", given, {name: "arguments" if name == "models" else flag_of(name) for name in given})


def env_layer(skip: set[str] = frozenset()) -> Layer:
    """Settings given as PALLET_* environment variables (and the port as SAGEMAKER_BIND_TO_PORT),
    but for those in `skip` (given as flags: a flag wins, so its variable is not read)."""
    values = {name: value for name, value in EnvSettingsSource(ServeConfig)().items() if name not in skip}
    layer = Layer("env", values, {name: env_of(name) for name in values})
    sagemaker = os.environ.get(SAGEMAKER_PORT) or None
    if "port" not in values and "port" not in skip and sagemaker is not None:
        if not sagemaker.isascii() or not sagemaker.isdigit() or not 1 <= int(sagemaker) <= 65535:
            raise SettingError("port", sagemaker, "a port number", SAGEMAKER_PORT)
        layer.values["port"], layer.names["port"] = int(sagemaker), SAGEMAKER_PORT
    return layer


def file_layer(values: dict[str, Any], path: str) -> Layer:
    """The settings a bundle's pallet.yaml holds (already checked by `check_file`)."""
    return Layer("pallet.yaml", dict(values), path=path)


def resolve(flags: dict[str, Any], file: Layer | None = None) -> Resolved:
    """The settings that hold, each with where it came from. A value a user gave that the model
    refuses raises `SettingError` whose `source` names the flag, variable or file it came from."""
    given = flags_layer(flags)
    layers = [file or Layer("pallet.yaml"), env_layer(skip=set(given.values)), given]
    values, origins = {}, {name: "default" for name in ServeConfig.model_fields}
    for layer in layers:
        for name, value in layer.values.items():
            values[name], origins[name] = value, layer.where(name)
    try:
        config = ServeConfig(**values)
        check_ui(config)
        return Resolved(config, origins)
    except SettingError as error:
        layer = next((layer for layer in reversed(layers) if error.name in layer.values), None)
        if layer is None:
            raise
        raise error.given_as(layer.source(error.name)) from None


def check_file(values: Any, path: str) -> dict[str, Any]:
    """The `serve:` section of the pallet.yaml at `path`, checked: known settings, values they take."""
    if not isinstance(values, dict):
        raise PalletError(f"{path}: 'serve' must be a mapping of settings")
    settings = set(ServeConfig.model_fields) - {"models"}
    unknown = sorted(set(map(str, values)) - settings)
    if unknown:
        raise PalletError(f"{path}: unknown serve settings {', '.join(unknown)}; "
                          f"settings: {', '.join(sorted(settings))}")
    secrets = [name for name in values if is_secret(name)]
    if secrets:
        raise PalletError(f"{path}: serve.{secrets[0]} is a secret: give it as {flag_of(secrets[0])} or "
                          f"{env_of(secrets[0])}, never in a file")
    for name, value in values.items():
        try:
            ServeConfig(**{name: value})
        except SettingError as error:
            raise error.given_as(f"{path}: serve.{name}") from None
    return values


def shown(name: str, value: Any) -> str:
    """A setting's value as --show-config prints it: secrets and passwords in URLs hidden, durations
    and milliseconds with their unit."""
    if is_secret(name):
        return "<set>" if value else "<not set>"
    if value is None:
        return "-"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return ", ".join(value) or "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    metadata = ServeConfig.model_fields[name].metadata
    if DURATION in metadata:
        return format_duration(value)
    if MILLISECONDS in metadata:
        return f"{value:g}ms"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(resolved: Resolved) -> list[str]:
    """--show-config: each setting, its value and where it came from, then the API key (set or not)."""
    rows = [(name, shown(name, getattr(resolved.config, name)), resolved.origins[name])
            for name in ServeConfig.model_fields]
    key = os.environ.get("PALLET_API_KEY")
    rows.append(("api_key", "<set>" if key else "<not set>", "env PALLET_API_KEY" if key else "default"))
    width = max(len(name) for name, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    lines = ["# pallet serve settings (flag > environment > pallet.yaml > default)"]
    lines += [f"{name:<{width}}  {value:<{value_width}}  {origin}" for name, value, origin in rows]
    return lines
