"""How `pallet serve` runs: every option once, with its one default and its one help text.

Flags, the environment (`PALLET_WORKERS` for `workers`), the `serve:` section of a bundle's
`pallet.yaml` and the worker processes all read this model; `pallet.settings.layers` decides which
of them gives each value (flag > environment > file > default). Built directly, a `ServeConfig`
holds what it is given and the defaults, nothing from the environment."""

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pallet.errors import PalletError
from pallet.units import format_duration, parse_duration
from pallet.urls import redact

ENV = "PALLET_SERVE_CONFIG"  # the resolved settings, as JSON, for worker processes
ENV_PREFIX = "PALLET_"
# What a browser sends in Origin: scheme://host[:port], no path; or * for any origin.
ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,128}")  # it goes in URLs
CACHES = ("redis://", "rediss://", "unix://")  # besides memory and memory:N


class SettingError(PalletError):
    """A setting's value is not one it can take. `source` says where the value came from. `problem`,
    for a value of the right kind that is still wrong (an origin, a token), says what is wrong with it:
    the message is the source, then the problem."""

    def __init__(self, name: str, value: Any, expected: str, source: str | None = None, problem: str | None = None):
        self.name, self.value, self.expected, self.source, self.problem = name, value, expected, source, problem
        where = source or name
        super().__init__(f"{where} {problem}" if problem else f"{where} must be {expected}, got {value!r}")

    def given_as(self, source: str) -> "SettingError":
        """The same mistake, named by where the value was given: --ui, PALLET_UI, pallet.yaml: serve.ui."""
        return SettingError(self.name, self.value, self.expected, source, self.problem)


class Unfit(ValueError):
    """Raised by a setting's validator: what is wrong with the value, in words that follow its source."""


def _duration(value: Any) -> Any:
    if value is None:
        return value
    try:
        return parse_duration(value)
    except PalletError as error:
        raise ValueError(str(error)) from None


def _milliseconds(value: Any) -> Any:
    """A plain number is milliseconds; a duration with its unit (5ms, 0.01s) is converted."""
    if isinstance(value, str) and re.search(r"[0-9.](ms|s|m|h|d)\s*$", value.lower()):
        return _duration(value) * 1000
    return value


def _listed(value: Any) -> Any:
    """A list, or text: a JSON list, or items separated by commas (as environment variables hold them)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


DURATION = BeforeValidator(_duration)
MILLISECONDS = BeforeValidator(_milliseconds)
Seconds = Annotated[float, DURATION]
Milliseconds = Annotated[float, MILLISECONDS]
Listed = Annotated[list[str], NoDecode, BeforeValidator(_listed)]


def option(default: Any, help: str, *, flag: str | None = None, secret: bool = False, **limits: Any) -> Any:
    """A setting: its default, its help, and the limits its values keep to. `flag` names a flag
    spelled other than `--name-with-dashes`; a `secret` is never printed and never written to a file."""
    extra = {key: value for key, value in (("flag", flag), ("secret", secret)) if value}
    return Field(default, description=help, json_schema_extra=extra or None, **limits)


class ServeConfig(BaseSettings):
    """What `pallet serve` was asked to do; travels to worker processes as JSON in the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid",
                                      validate_default=False)

    models: Listed = option([], "Models to serve: name, name:VERSION or name@ALIAS.")
    host: str = option("127.0.0.1", "Address to bind (0.0.0.0 for every interface).")
    port: int = option(8000, "Port to listen on (SAGEMAKER_BIND_TO_PORT sets it too).", ge=1, le=65535)
    grpc_port: int | None = option(None, "Also answer the Open Inference Protocol over gRPC on this port "
                                         "(0: no gRPC, e.g. for a bundle whose pallet.yaml has a port).",
                                   ge=0, le=65535)
    workers: int = option(1, "Worker processes sharing the port.", ge=1)
    threads: int | None = option(None, "Native threads per worker (default: cores / workers).", ge=1)
    max_body_mb: float = option(16.0, "Largest request body, in MiB (bigger gets 413).", gt=0)
    max_rows: int = option(100_000, "Most rows in one request.", ge=1)
    max_elements: int = option(10_000_000, "Most values in one request's input tensors (413).", ge=1)
    large_requests: int = option(4, "Requests with bodies over 256 KiB answered at once, per worker; "
                                    "others wait (bounds memory).", ge=1)
    max_header_kb: float = option(64.0, "Largest request line and headers, in KiB (431).", ge=1)
    read_timeout: Seconds = option(30.0, "How long a client has to send a request's headers, and then its "
                                         "body (408).", ge=0.1)
    drain_seconds: Seconds = option(0.0, "On SIGTERM, report not ready but keep answering this long, while "
                                         "load balancers notice.", ge=0)
    grace_seconds: Seconds = option(30.0, "Then, how long in-flight requests have to finish.", ge=0)
    max_batch_size: int = option(32, "Rows per predict call when batching (1: off).", ge=1)
    max_latency_ms: Milliseconds = option(5.0, "Longest a request waits to share a batch, in ms "
                                               "(or a duration such as 2ms).", ge=0)
    max_queue: int = option(1024, "Requests waiting per model before 503 + Retry-After.", ge=1)
    cache: str | None = option(None, "Cache outputs: memory, memory:N (entries) or redis://host:6379/0.")
    cache_ttl: Seconds = option(3600.0, "How long a Redis cache entry lives.", ge=1)
    auth: bool = option(False, "Require PALLET_API_KEY on every endpoint, not only admin ones.")
    access_log: bool = option(True, "One JSON line per request.")
    skip_unloadable: bool = option(False, "Serve the models that load; report the others not ready (503).")
    share_token: str | None = option(None, "Require this token in the URL (?token=) for the pages and the API; "
                                           "'new' makes one.", secret=True)
    cors_origins: Listed = option([], "Let browser pages from this origin (https://host[:port]) call the API; "
                                      "repeat for more. Off unless given.", flag="--cors-origin")
    ui: str | None = option(None, "Serve your own static page from this folder at / instead of the index.")
    rollout_poll: Seconds = option(1.0, "How often the rollout state is read from the store.", gt=0)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings,)  # the layers (flags, environment, file) are put together in pallet.settings.layers

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise setting_error(error, values) from None

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_or_false_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and kind_of(info.field_name) in (int, float):
            raise ValueError("a number, not true or false")
        return value

    @field_validator("grpc_port")
    @classmethod
    def _no_grpc_at_zero(cls, port: int | None) -> int | None:
        return port or None

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [check_origin(origin) for origin in origins]

    @field_validator("share_token")
    @classmethod
    def _share_token(cls, token: str | None) -> str | None:
        if token is not None and token != "new" and not SHARE_TOKEN.fullmatch(token):
            raise Unfit("must be 8 to 128 letters, digits, '-' or '_' (it goes in URLs)")
        return token

    @field_validator("cache")
    @classmethod
    def _cache(cls, spec: str | None) -> str | None:
        cache_spec(spec)
        return spec

    @property
    def api_key(self) -> str | None:
        """Read from the environment only, so it never lands in a file or a process listing."""
        return os.environ.get("PALLET_API_KEY") or None

    @property
    def max_body_bytes(self) -> int:
        """`max_body_mb` as a count of bytes."""
        return int(self.max_body_mb * 2**20)

    @property
    def max_header_bytes(self) -> int:
        """`max_header_kb` as a count of bytes."""
        return int(self.max_header_kb * 1024)

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> "ServeConfig":
        return cls.model_validate_json(os.environ.get(ENV, "{}"))


def check_origin(origin: str) -> str:
    """`origin` as browsers send it (scheme://host[:port]), or `Unfit` saying what is wrong."""
    origin = origin.strip().rstrip("/")
    if origin != "*" and not ORIGIN.fullmatch(origin):
        raise Unfit(f"{origin!r} is not an origin: write scheme://host[:port], "
                    "e.g. https://app.example.com or http://localhost:3000 (or * for any)")
    return origin


def cache_spec(spec: str | None) -> tuple[str, str | int] | None:
    """What a --cache value asks for: None, ("memory", entries) or ("redis", url); `Unfit` otherwise."""
    if not spec:
        return None
    if spec.startswith(CACHES):
        return "redis", spec
    if spec == "memory" or spec.startswith("memory:"):
        size = spec.partition(":")[2] or "10000"
        if not size.isascii() or not size.isdigit() or int(size) < 1:
            raise Unfit(f"memory:N needs a positive number of entries, got {spec!r}")
        return "memory", int(size)
    raise Unfit(f"must be memory, memory:N or redis://host:port/db, got {redact(spec)!r}")


def check_ui(config: "ServeConfig") -> None:
    """Raises `SettingError` unless the --ui folder, if any, holds the index.html served at /. Checked
    where settings are resolved for this machine, not in the model: the folder is this machine's."""
    if config.ui is not None and not (Path(config.ui) / "index.html").is_file():
        raise SettingError("ui", config.ui, expected("ui"),
                           problem=f"{config.ui}: no index.html there; the folder is served at / as it is")


def setting_error(error: ValidationError, values: dict) -> PalletError:
    """The first mistake in `error` as one line: the setting, what it takes, and the value given."""
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if name not in ServeConfig.model_fields:
        return PalletError(f"unknown serve setting {name!r}; settings: {', '.join(ServeConfig.model_fields)}")
    cause = first.get("ctx", {}).get("error")
    problem = str(cause) if isinstance(cause, Unfit) else None
    return SettingError(name, values.get(name, first.get("input")), expected(name),
                        problem=problem)


def expected(name: str) -> str:
    """What the setting `name` takes, in words: 'a positive whole number up to 65535'."""
    field = ServeConfig.model_fields[name]
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    above = next((m.gt for m in field.metadata if hasattr(m, "gt")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    if DURATION in field.metadata:
        floor = f" of at least {format_duration(low)}" if low else (" above 0" if above is not None else "")
        return f"a duration such as 500ms, 10s, 5m or 1h{floor}"
    if MILLISECONDS in field.metadata:
        return "a number of milliseconds, 0 or more (or a duration such as 5ms)"
    kind = kind_of(name)
    if kind is int:
        words = "a positive whole number" if low == 1 else "a whole number" + (f" from {low}" if low is not None else "")
        return words + (f" up to {high}" if high is not None else "")
    if kind is float:
        return "a number" + (f" of at least {low:g}" if low is not None else f" above {above:g}" if above is not None
                             else "")
    if kind is bool:
        return "true or false"
    return "a list of text" if kind is list else "text"


def kind_of(name: str) -> type:
    """The plain type of a setting's values: int, float, bool, str or list."""
    annotation = ServeConfig.model_fields[name].annotation
    for kind in (bool, int, float, list):
        if annotation is kind or kind in getattr(annotation, "__args__", ()) \
                or getattr(annotation, "__origin__", None) is kind:
            return kind
    return str


def is_secret(name: str) -> bool:
    return bool((ServeConfig.model_fields[name].json_schema_extra or {}).get("secret"))
