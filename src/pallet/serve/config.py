"""What `pallet serve` was asked to do: the serve settings model, under the name the server uses."""

from pallet.settings.serve import ENV, ORIGIN, ServeConfig, SettingError, check_origin

__all__ = ["ENV", "ORIGIN", "ServeConfig", "SettingError", "check_origin"]
