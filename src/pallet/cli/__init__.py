"""The `pallet` command. It parses arguments and calls the library; nothing more."""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from pallet.errors import PalletError


class PalletGroup(TyperGroup):
    """Prints every error a user can cause as one line on stderr, with a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except typer.TyperException as e:  # usage errors: bad option, missing argument, no such command
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(0)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(f"{e.format_message()}{hint}", e.exit_code)
        except typer.Abort:
            _fail("aborted", 1)
        except PalletError as e:
            _fail(str(e), 1)
        except OSError as e:
            _fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), 1)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


# Every command and group inherits these from the root: -h as well as --help, and help printed as written
# (typer hands the root's markup mode down to every sub-app; click's context hands down the help options).
CONTEXT = {"help_option_names": ["-h", "--help"]}
MARKUP = None

app = typer.Typer(
    cls=PalletGroup,
    help="pallet: store models, predict, and take them to production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
    rich_markup_mode=MARKUP,
)


def _version(value: bool) -> None:
    """`pallet --version`: pallet's version, then where the store is; it opens (and creates) nothing."""
    if not value:
        return
    import importlib.metadata

    from pallet.store.store import home_path, index_url
    from pallet.urls import redact

    try:
        number = importlib.metadata.version("pallet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from pallet import __version__ as number
    home = home_path()
    typer.echo(f"pallet {number}\nstore  {home}\nindex  {redact(index_url(home))}")
    raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_version,
                                       help="Print pallet's version, the store's folder and its index; then exit.")
          ) -> None:
    """The root's own options (the app's help says what pallet is)."""

from pallet.cli import batch, bench, build, demo, doctor, export, feedback, models, pipeline, predict, rollout, serve, up  # noqa: E402  (commands register on `app`)

app.add_typer(models.app, name="models")
app.add_typer(feedback.app, name="feedback")
app.add_typer(batch.app, name="batch")
app.add_typer(rollout.app, name="rollout")
app.add_typer(pipeline.app, name="pipeline")


def main() -> None:
    app()


__all__ = ["app", "main", "batch", "bench", "build", "demo", "doctor", "export", "feedback", "pipeline", "predict", "rollout", "serve", "up"]
