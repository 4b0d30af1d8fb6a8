"""What a caller may choose per job, described for forms: ``GET /v1/options``.

Built from ``JobOptions`` (names, types, bounds, help text) and the server's ``Settings`` (the
value a field takes when left at 0, "server default"), so the web page shows the real defaults and
bounds and never repeats them.
"""
from __future__ import annotations

import enum
import typing

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, Field

from services.common.settings import Settings

from ..jobs.manifest import JobOptions


class OptionDescription(BaseModel):
    """One job option as a form shows it."""

    name: str
    type: str = Field(description="integer, number, boolean or string")
    default: typing.Any = Field(description="the value the server uses when the option is not sent")
    minimum: int | float | None = Field(None, description="smallest value a caller may send (inclusive)")
    maximum: int | float | None = Field(None, description="largest value a caller may send (inclusive)")
    choices: list[str] | None = Field(None, description="the allowed values of a string option")
    server_default_setting: str | None = Field(
        None, description="the environment variable the default comes from, when it is a server setting")
    help: str = ""


class UploadLimits(BaseModel):
    max_upload_mb: int = Field(description="largest upload accepted (413 above)")
    max_duration_s: float = Field(description="longest video accepted (422 above)")


class OptionsView(BaseModel):
    options: list[OptionDescription]
    limits: UploadLimits


_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _bounds(metadata: list) -> tuple[int | float | None, int | float | None]:
    low = high = None
    for item in metadata:
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Gt):
            low = item.gt + 1
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Lt):
            high = item.lt - 1
    return low, high


def describe_option(name: str, settings: Settings) -> OptionDescription:
    """One ``JobOptions`` field. An integer field whose own default is 0 takes the same-named
    setting as its default; 0 itself then means "server default", so the smallest value a person
    chooses is 1."""
    info = JobOptions.model_fields[name]
    annotation = info.annotation
    choices = None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = [str(m.value) for m in annotation]
        type_name = "string"
    elif typing.get_origin(annotation) is typing.Literal:
        choices = [str(v) for v in typing.get_args(annotation)]
        type_name = "string"
    else:
        type_name = _TYPE_NAMES.get(annotation, "string")
    default = info.default.value if isinstance(info.default, enum.Enum) else info.default
    low, high = _bounds(info.metadata)
    setting = None
    if type_name == "integer" and default == 0 and hasattr(settings, name):
        default = getattr(settings, name)
        setting = f"HPE3D_{name.upper()}"
        low = max(low or 0, 1)
    return OptionDescription(name=name, type=type_name, default=default, minimum=low, maximum=high,
                             choices=choices, server_default_setting=setting, help=info.description or "")


def describe_options(settings: Settings) -> OptionsView:
    return OptionsView(options=[describe_option(name, settings) for name in JobOptions.model_fields],
                       limits=UploadLimits(max_upload_mb=settings.max_upload_mb,
                                           max_duration_s=settings.max_duration_s))
