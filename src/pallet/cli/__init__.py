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


app = typer.Typer(
    cls=PalletGroup,
    help="pallet: store models, predict, and take them to production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from pallet.cli import batch, bench, build, demo, doctor, export, feedback, models, pipeline, predict, rollout, serve, up  # noqa: E402  (commands register on `app`)

app.add_typer(models.app, name="models")
app.add_typer(feedback.app, name="feedback")
app.add_typer(batch.app, name="batch")
app.add_typer(rollout.app, name="rollout")
app.add_typer(pipeline.app, name="pipeline")


def main() -> None:
    app()


__all__ = ["app", "main", "batch", "bench", "build", "demo", "doctor", "export", "feedback", "pipeline", "predict", "rollout", "serve", "up"]
