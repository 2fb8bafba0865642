"""`pallet serve`: the online inference server. Its options are the fields of the serve settings model."""

from __future__ import annotations

import inspect
import os
import secrets
from pathlib import Path
from typing import Any, Optional

import typer

from pallet.cli import app
from pallet.deploy.bundle import CONFIG, bundle_store, load_config
from pallet.serve.server import serve as run_server
from pallet.settings import ServeConfig, SettingError, describe, file_layer, flag_of, resolve
from pallet.settings.layers import shown
from pallet.settings.serve import DURATION, kind_of


def serve(models: list[str] | None, bundle: Path | None, show_config: bool, **flags: Any) -> None:
    """Serve models over KServe V2 (REST, and gRPC with --grpc-port), KServe V1, SageMaker and MLflow protocols.

    Every option can also be set in the environment (PALLET_WORKERS for --workers) or in the serve:
    section of a bundle's pallet.yaml; a flag wins over the environment, which wins over the file.
    --show-config prints what holds and where each value came from."""
    file = None
    if bundle is not None:
        if models:
            raise typer.BadParameter("a bundle names its own models; drop the model arguments or --bundle")
        config = load_config(bundle)
        file = file_layer({"models": config["models"], **config["serve"]}, str(Path(bundle) / CONFIG))
    try:
        resolved = resolve({"models": models, **flags}, file)
    except SettingError as error:
        raise _as_usage_error(error) from None
    if show_config:
        typer.echo("\n".join(describe(resolved)))
        return
    config = resolved.config
    if config.auth and not os.environ.get("PALLET_API_KEY"):
        raise typer.BadParameter("--auth needs the key in the PALLET_API_KEY environment variable")
    reveal = config.share_token == "new"
    if reveal:
        config = config.model_copy(update={"share_token": secrets.token_urlsafe(16)})
    store = bundle_store(bundle) if bundle is not None else None
    run_server(config, store=store, echo=typer.echo, reveal_token=reveal)


def _as_usage_error(error: SettingError) -> Exception:
    """A bad flag or environment variable as a usage error (exit 2); a bad file stays a PalletError (exit 1),
    and so does a flag's value of the right kind that is still wrong (an origin, a token, a folder)."""
    if error.source and error.source.startswith("--"):
        if error.problem:
            return error
        return typer.BadParameter(f"must be {error.expected}, got {error.value!r}", param_hint=f"'{error.source}'")
    if error.source and ":" not in error.source:
        return typer.BadParameter(str(error))
    return error


def _option(name: str) -> inspect.Parameter:
    """The typer option of one setting: its help from the model, None when not given. The model, not
    typer, checks the value, so a flag's mistake reads as the same setting's in the environment or the file."""
    field = ServeConfig.model_fields[name]
    kind = kind_of(name)
    flag = flag_of(name)
    limits: dict[str, Any] = {}
    bounds = ""
    if DURATION in field.metadata:
        kind, limits["metavar"] = str, "DURATION"
    elif name == "max_latency_ms":
        kind, limits["metavar"] = str, "MS"
    elif kind in (int, float):
        kind, limits["metavar"], bounds = str, "INTEGER" if kind is int else "NUMBER", _range(field)
    default = field.default
    shown_default = f" [default: {shown(name, default)}]" if default is not None and default != [] else ""
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    annotation = Optional[list[str]] if kind is list else Optional[kind]
    text = f"{field.description}{bounds}{shown_default}"
    option = typer.Option(None, *decls, help=text, show_default=False, **limits)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _range(field: Any) -> str:
    """The bounds a number setting keeps to, for its help: [x>=1], [1<=x<=65535]."""
    low = next((bound.ge for bound in field.metadata if getattr(bound, "ge", None) is not None), None)
    high = next((bound.le for bound in field.metadata if getattr(bound, "le", None) is not None), None)
    if high is None:
        return "" if low is None else f" [x>={low}]"
    return f" [{'' if low is None else f'{low}<='}x<={high}]"


def _parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    models = inspect.Parameter("models", keyword, annotation=Optional[list[str]],
                               default=typer.Argument(None, help=ServeConfig.model_fields["models"].description))
    bundle = inspect.Parameter("bundle", keyword, annotation=Optional[Path], default=typer.Option(
        None, "--bundle", help="Serve what a bundle from 'pallet build' holds, as its pallet.yaml says."))
    show_config = inspect.Parameter("show_config", keyword, annotation=bool, default=typer.Option(
        False, "--show-config", help="Print the settings that would hold, and where each came from; then exit."))
    options = [_option(name) for name in ServeConfig.model_fields if name != "models"]
    return [models, *options, bundle, show_config]


serve.__signature__ = inspect.Signature(_parameters())
serve.__annotations__ = {}
app.command()(serve)
