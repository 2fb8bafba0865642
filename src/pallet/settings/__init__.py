"""Settings: one model per thing pallet runs, read from flags, the environment and files."""

from pallet.settings.layers import Resolved, check_file, describe, env_of, file_layer, flag_of, resolve
from pallet.settings.serve import ENV, ServeConfig, SettingError, check_origin

__all__ = ["ENV", "Resolved", "ServeConfig", "SettingError", "check_file", "check_origin", "describe", "env_of",
           "file_layer", "flag_of", "resolve"]
