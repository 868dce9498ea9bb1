"""Small readers for docker-compose.yml, the settings model and Dockerfiles.

The tests in this folder compare three sources of truth that drift apart
silently in projects like this one: the variables `core.settings.Settings`
reads, the environment and ports the compose file gives each service, and the
images the Dockerfiles build. These helpers turn each into plain data.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}; not $${escaped}.
_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
_UNBRACED = re.compile(r"(?<!\$)\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


def settings_env_names(settings_cls: type[BaseSettings]) -> dict[str, object]:
    """Environment variable name -> default, for every field of a pydantic-settings model.

    pydantic-settings reads field `foo_bar` from `FOO_BAR` (plus the model's
    env_prefix), unless the field names its own alias.
    """
    prefix = settings_cls.model_config.get("env_prefix", "")
    names: dict[str, object] = {}
    for field_name, field in settings_cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names[(alias or f"{prefix}{field_name}").upper()] = field.default
    return names


def fields_read_in(settings_cls: type[BaseSettings], folders: list[Path]) -> set[str]:
    """Settings fields that the Python code under `folders` reads (`settings.field`, `s.field`, `self.field`).

    Tells which settings the pipeline's code needs in a container.
    """
    attributes: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            attributes |= set(re.findall(r"\.([a-z_][a-z0-9_]*)\b", path.read_text()))
    return attributes & set(settings_cls.model_fields)


def compose_variables(text: str) -> dict[str, list[tuple[str, str]]]:
    """Every `${VAR...}` the compose file interpolates: name -> [(operator, argument), ...]."""
    found: dict[str, list[tuple[str, str]]] = {}
    for match in _VARIABLE.finditer(text):
        found.setdefault(match["name"], []).append((match["op"] or "", match["arg"]))
    return found


def unbraced_variables(text: str) -> set[str]:
    """`$VAR` references (without braces), which this project's style avoids."""
    return {m["name"] for m in _UNBRACED.finditer(text)}


def env_file_names(text: str) -> dict[str, str]:
    """NAME -> value for the `NAME=value` lines of a .env file (comments skipped)."""
    entries = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep:
            entries[name.strip()] = value.strip()
    return entries


def service_environment(service: dict) -> dict[str, str]:
    """A service's `environment`, dict or list form, as a dict of strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict) -> dict[int, int]:
    """host port -> container port for a service's `ports` (short "H:C" or long form)."""
    mapping = {}
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            mapping[int(port["published"])] = int(port["target"])
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) < 2:
            continue  # container-only port: nothing published on the host
        mapping[int(parts[-2])] = int(parts[-1])
    return mapping


def image_tag(image: str) -> str | None:
    """The tag of `repo/name:tag` (None when absent); digests count as pinned."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def dockerfile_from_images(path: Path) -> list[str]:
    """The external images a Dockerfile builds FROM (earlier stages' names excluded)."""
    stages: set[str] = set()
    images = []
    for line in path.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        image = args[0]
        if image not in stages:
            images.append(image)
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2])
    return images


def dockerfile_copy_sources(path: Path) -> list[str]:
    """Source paths of COPY/ADD lines that read the build context (not --from=stage)."""
    sources = []
    for line in path.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in {"COPY", "ADD"}:
            continue
        if any(w.startswith("--from") for w in words[1:]):
            continue
        paths = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def host_port(address: str, default_scheme: str = "tcp") -> tuple[str, int | None]:
    """Host and port of "host:port" or "scheme://host:port/path"."""
    split = urlsplit(address if "://" in address else f"{default_scheme}://{address}")
    return split.hostname or "", split.port
