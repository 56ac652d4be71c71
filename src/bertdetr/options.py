"""Command-line options made from the typed configs, so flags, defaults and help cannot drift.

- ``field_specs(module, class)``: each dataclass field's annotation, default and the one-line
  docstring under it (the configs' convention), read from source; the docstring becomes the
  option's help and the ``_doc`` of a full JSON config.
- ``add_field_options(parser, cls, ...)``: one option per field, ``--field-name`` and Google's
  ``--field_name``, typed from the annotation, defaulting to the field's default.
- ``add_flag``: every boolean option alike: ``--x`` (true), ``--x=false`` / ``--x false`` (absl's
  values, so Google's ``--do_lower_case=False`` works) and ``--no-x``.
- ``DefaultsHelpFormatter``: ``--help`` shows each option's default.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib.util


def absl_bool(text: str) -> bool:
    """absl's boolean flag values: true/t/1/yes/y and false/f/0/no/n, any case."""
    value = text.strip().lower()
    if value in ("true", "t", "1", "yes", "y"):
        return True
    if value in ("false", "f", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_flag(parser, *names: str, dest: str, default: bool | None = False, help: str = "",
             negative: bool = True) -> None:
    """A boolean option: bare means true, ``=false``/``false`` false, and (``negative``) ``--no-NAME``
    (and Google's ``--noNAME`` for underscore names) false."""
    parser.add_argument(*names, dest=dest, default=default, nargs="?", const=True, type=absl_bool,
                        metavar="BOOL", help=help)
    if negative:
        negatives = []
        for name in names:
            bare = name.lstrip("-")
            negatives.append(f"--no{bare}" if "_" in bare else f"--no-{bare}")
        parser.add_argument(*negatives, dest=dest, action="store_false", help=argparse.SUPPRESS)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    annotation: str
    """The annotation as written, e.g. ``"int | None"``, ``"list[str]"``."""
    default: object
    """The default (``dataclasses.MISSING`` if none, or not a literal)."""
    doc: str
    """The docstring line under the field."""


@functools.cache
def field_specs(module: str, class_name: str) -> dict[str, FieldSpec]:
    """The fields of a config dataclass read from its module's source, without importing it (so
    building the command line does not import torch): names, annotations, literal defaults and the
    docstring under each field."""
    spec = importlib.util.find_spec(module)
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    # a base config's fields come first, as dataclasses order them (a field redefined here keeps
    # its place and takes this class's default and docstring)
    specs: dict[str, FieldSpec] = {}
    for base in cls.bases:
        where = _base_module(tree, module, base)
        if where is not None:
            specs.update(field_specs(where, base.id))
    body = cls.body
    for k, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        after = body[k + 1] if k + 1 < len(body) else None
        doc = ""
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            doc = " ".join(after.value.value.split())
        specs[node.target.id] = FieldSpec(node.target.id, ast.unparse(node.annotation), _literal_default(node.value),
                                          doc)
    return specs


def _base_module(tree: ast.Module, module: str, base: ast.expr) -> str | None:
    """The module (of this package) that defines the base class ``base`` of a class of ``module``:
    ``module`` itself, or the one it imports the name from; None for other bases (``object``,
    ``Protocol``, classes from other packages)."""
    if not isinstance(base, ast.Name):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == base.id:
            return module
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == base.id and a.name == base.id
                                                    for a in node.names):
            where = importlib.util.resolve_name("." * node.level + (node.module or ""), module.rpartition(".")[0]) \
                if node.level else node.module
            return where if where.split(".")[0] == module.split(".")[0] else None
    return None


def _literal_default(node) -> object:
    if node is None:
        return dataclasses.MISSING
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "field":
        for kw in node.keywords:
            if kw.arg == "default_factory" and isinstance(kw.value, ast.Name) and kw.value.id in ("list", "dict"):
                return [] if kw.value.id == "list" else {}
            if kw.arg == "default":
                return _literal_default(kw.value)
        return dataclasses.MISSING
    try:
        return ast.literal_eval(node)
    except ValueError:
        return dataclasses.MISSING


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _option_type(annotation: str) -> tuple[type, bool]:
    """(element type, is a list) of an annotation such as ``int``, ``float | None``, ``list[int]``."""
    parts = [p.strip() for p in annotation.split("|") if p.strip() != "None"]
    kind = parts[0]
    if kind.startswith("list[") and kind.endswith("]"):
        return _TYPES[kind[5:-1]], True
    return _TYPES[kind], False


def add_field_options(parser, module: str, class_name: str, names: list[str],
                      aliases: dict[str, list[str]] | None = None, required: tuple[str, ...] = (),
                      help: dict[str, str] | None = None, choices: dict[str, list] | None = None,
                      types: dict[str, object] | None = None, override: str | None = None) -> None:
    """One option per field of ``names`` of ``module.class_name``: ``--field-name`` and
    ``--field_name`` (plus ``aliases``), help from the field's docstring (or ``help``), default and
    type from the field. ``override="train"``: the options override a config file's section of
    that name, so they default to None (not given) and their help says so. ``types``: a conversion
    other than the annotation's (e.g. ``str.lower`` before ``choices``)."""
    specs = field_specs(module, class_name)
    for name in names:
        spec = specs[name]
        flags = list(dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}", *(aliases or {}).get(name, [])]))
        text = ((help or {}).get(name) or spec.doc).replace("``", "").replace("%", "%%")
        default = None if spec.default is dataclasses.MISSING else spec.default
        if override:
            shown = "" if default in (None, [], dataclasses.MISSING) else f", else {default}"
            text = f"{text} Overrides {override}.{name} (default: the config file's{shown})"
            default = None
        kind, many = _option_type(spec.annotation)
        if kind is bool:
            add_flag(parser, *flags, dest=name, default=default, help=text)
        elif many:
            parser.add_argument(*flags, dest=name, type=kind, nargs="+", default=default,
                                required=name in required, help=text)
        else:
            parser.add_argument(*flags, dest=name, type=(types or {}).get(name, kind), default=default,
                                required=name in required, choices=(choices or {}).get(name), help=text)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` after an option's help unless the help already says its default or
    there is none to show (None, a false flag, a suppressed value)."""

    def _get_help_string(self, action):
        text = action.help or ""
        # identity, not ==: a default of 0 or 0.0 equals False and must still be shown
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                or action.default == []:
            return text
        if not action.option_strings or action.nargs == 0:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def use_defaults_formatter(parser: argparse.ArgumentParser) -> None:
    """Sets ``DefaultsHelpFormatter`` on ``parser`` and all its subcommands."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_defaults_formatter(sub)
