"""The reference pages of the documentation site, generated from the code.

Three pages, each a pure function returning Markdown:

- `settings_markdown()`: every field of `config.settings.Settings`: its environment variable, type,
  default and description. A secret's default is never printed: it reads "not set" (or "demo value"
  for the shipped demo secrets, which a real send refuses).
- `campaign_file_markdown()`: the keys of a campaign file (`shopmail.campaigns.Campaign` and the
  models it nests: `[coupon]`, `[ab_test]`, `[[ab_test.variants]]`).
- `cli_markdown()`: every command of the typer app in `shopmail/cli.py` with its arguments and options.

`mkdocs_hooks.py` (the MkDocs hook at the repository root, the docs build's entry point) adds them to
the site at build time, so they are never committed and never stale; `python mkdocs_hooks.py DIR`
writes them into DIR to read them. The CLI page takes the click command of the typer app as an
argument: devtools may not import `shopmail.cli` (tests/test_import_directions.py).
"""

from __future__ import annotations

import contextlib
import enum
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from config.secrets import SECRET_FIELDS

PROJECT_ROOT = Path(__file__).resolve().parents[2]

NOTICE = "<!-- generated at build time by shopmail/devtools/docs_reference.py: edit the code, not this -->"


def _cell(text: Any) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `int`, `list[str]`, `outbox | sendgrid | memory`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " | ".join(parts) + (" (optional)" if optional else "")
    if origin is typing.Literal:
        return " | ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f"`{m.value}`" for m in annotation)
    if annotation is SecretStr:
        return "text"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"table ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def _default(name: str, field: FieldInfo, secret: bool) -> str:
    """A field's default as shown on the page; a secret's value never."""
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if secret:
        return "demo value (refused for a real send)" if value else "not set"
    if value is None or value is PydanticUndefined:
        return "not set"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Path):
        with contextlib.suppress(ValueError):
            value = value.relative_to(PROJECT_ROOT)
        return f"`{value}`"
    if isinstance(value, str) and value == "":
        return "empty"
    if isinstance(value, list | tuple | dict) and not value:
        return "empty"
    return f"`{value}`"


def _constraints(field: FieldInfo) -> str:
    """`≥ 1, ≤ 1000` from the field's bounds."""
    words = {
        "gt": ">",
        "ge": "≥",
        "lt": "<",
        "le": "≤",
        "min_length": "at least",
        "max_length": "at most",
        "pattern": "matches",
    }
    found = []
    for item in field.metadata:
        for attr, word in words.items():
            value = getattr(item, attr, None)
            if value is not None:
                found.append(f"{word} `{value}`" if attr == "pattern" else f"{word} {value}")
    return ", ".join(found)


def settings_markdown() -> str:
    """The settings page: one row per `Settings` field, secrets marked and never shown."""
    from config.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    lines = [
        NOTICE,
        "# Settings",
        "",
        "Every setting is an environment variable (or a line of a `.env` file in the working folder), "
        f"read by `config/settings.py` (`{Settings.__name__}`, pydantic-settings). Lists are "
        "comma-separated; tables (`dict`) are JSON. **Secrets** are marked: their values are never "
        "printed, here or in logs; on a work pool they may come from Prefect Secret blocks "
        "(`SHOPMAIL_SECRET_BLOCKS=true`, blocks named `shopmail-<setting>`). The operator's view of "
        "the same settings, grouped by task, is [Configuration](../operating/configuration.md).",
        "",
        f"{len(Settings.model_fields)} settings.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        secret = name in SECRET_FIELDS or "SecretStr" in str(field.annotation)
        env = f"`{(prefix + name).upper()}`"
        kind = _type_name(field.annotation) + (" — **secret**" if secret else "")
        bounds = _constraints(field)
        meaning = (field.description or "").strip() or "–"
        if bounds:
            meaning += f" ({bounds})"
        lines.append(f"| {env} | {_cell(kind)} | {_cell(_default(name, field, secret))} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def _model_rows(model: type[BaseModel], key_prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("internal"):  # set by the code, never in a file
            continue
        key = f"`{key_prefix}{field.alias or name}`"
        meaning = (field.description or "").strip() or "–"
        bounds = _constraints(field)
        if bounds:
            meaning += f" ({bounds})"
        rows.append(
            f"| {key} | {_cell(_type_name(field.annotation))} | {_cell(_default(name, field, False))} "
            f"| {_cell(meaning)} |"
        )
    return rows


def campaign_file_markdown() -> str:
    """The campaign-file page: the top-level keys, then each nested table's."""
    from shopmail.campaigns import AbTest, Campaign, CouponPolicy, TestVariant

    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    doc = (Campaign.__doc__ or "").strip()
    lines = [
        NOTICE,
        "# Campaign file",
        "",
        "A campaign is one TOML file in `config/campaigns/` (or `SHOPMAIL_CAMPAIGNS_DIR`) plus a template "
        "folder in `email_templates/`; [Campaigns](../marketer/campaigns.md) explains them with an "
        "example. This page lists every key the file may hold, from the model that loads it "
        "(`shopmail/campaigns.py`). An unknown key or a wrong value disables that campaign only, "
        "with the reason (`shopmail campaigns` lists it as broken).",
        "",
    ]
    if doc:
        lines += [doc, ""]
    lines += ["## Top-level keys", "", *header, *_model_rows(Campaign, ""), ""]
    for title, model, prefix in (
        ("`[coupon]`: a personal coupon in every mail", CouponPolicy, "coupon."),
        ("`[ab_test]`: an A/B test", AbTest, "ab_test."),
        ("`[[ab_test.variants]]`: one variant of the test", TestVariant, "ab_test.variants[]."),
    ):
        lines += [f"## {title}", ""]
        if model.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += [*header, *_model_rows(model, prefix), ""]
    return "\n".join(lines)


def _param_type(param: Any) -> str:
    """The value type of an option: `int`, `datetime`, a choice's values."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:
        type_ = getattr(param, "type", None)
        return getattr(type_, "name", "text")
    return _type_name(annotation)


def _param_row(param: Any) -> str:
    """One table row of a click parameter (typer vendors click: duck-typed, not isinstance)."""
    if param.param_type_name == "argument":
        name = f"`{(param.metavar or param.name).upper()}`"
        kind = "argument" + ("" if param.required else " (optional)")
        help_text = getattr(param, "help", None) or "–"
    else:
        names = [*param.opts, *param.secondary_opts]
        name = " / ".join(f"`{n}`" for n in names)
        kind = "flag" if getattr(param, "is_flag", False) else f"option ({_param_type(param)})"
        help_text = param.help or "–"
    default = param.default
    if param.required:
        shown = "required"
    elif default is None or default == () or default is False or callable(default):
        shown = "–"
    else:
        shown = f"`{default.value if isinstance(default, enum.Enum) else default}`"
    return f"| {name} | {_cell(kind)} | {_cell(shown)} | {_cell(help_text)} |"


def _command_section(command: Any, path: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{path}`", ""]
    text = (command.help or command.short_help or "").strip()
    if text:
        lines += [text.split("\f")[0].strip(), ""]
    params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    if params:
        lines += ["| name | kind | default | meaning |", "|---|---|---|---|"]
        lines += [_param_row(p) for p in params]
        lines.append("")
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not getattr(sub, "hidden", False):
                lines += _command_section(sub, f"{path} {name}", min(level + 1, 4))
    return lines


def cli_markdown(root: Any) -> str:
    """The CLI page: the `shopmail` command and every subcommand (`root`: the typer app's click command)."""
    lines = [
        NOTICE,
        "# Command line reference",
        "",
        "Every command of `shopmail` (`shopmail/cli.py`), with its arguments and options as "
        "`shopmail COMMAND --help` prints them. The [command line guide](../operating/cli.md) "
        "shows them in use and what their errors mean.",
        "",
    ]
    lines += _command_section(root, "shopmail", 2)
    return "\n".join(lines) + "\n"


def reference_pages(cli_command: Any) -> dict[str, str]:
    """Every generated page: its path under docs/ -> its Markdown."""
    return {
        "reference/settings.md": settings_markdown(),
        "reference/campaign-file.md": campaign_file_markdown(),
        "reference/cli.md": cli_markdown(cli_command),
    }
