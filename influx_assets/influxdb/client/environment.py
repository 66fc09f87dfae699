"""Connection settings from ``INFLUXDB_*`` environment variables, with the documented defaults.

Dagster's ``EnvVar`` has no default: a variable that is not set at all fails the run's config. A
deployment that does not source this project's scripts (Docker, Kubernetes, Dagster+, ``dg dev`` by
hand) sets only what it needs, so this module reads the variables itself, when a run or sensor
initializes the resource (never at import), and applies the defaults below to unset or empty ones.

=========================  ==========================================  ===========================
variable                   meaning                                     when unset or empty
=========================  ==========================================  ===========================
``INFLUXDB_URL``           base URL, ``http(s)://host:port``            error (required)
``INFLUXDB_DATABASE``      database (1.x/3.x) or bucket (2.x)           ``telemetry``
``INFLUXDB_API``           ``auto``, ``v1`` or ``v2``                    ``auto`` (ask ``/ping``)
``INFLUXDB_TOKEN``         API token (secret)                           none
``INFLUXDB_ORG``           organization name or 16-hex ID (2.x)         none
``INFLUXDB_USERNAME``      user for 1.x basic auth                      none
``INFLUXDB_PASSWORD``      password for 1.x basic auth (secret)         none
=========================  ==========================================  ===========================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from influx_assets.influxdb.client.errors import TerminalInfluxError

#: The values ``InfluxDBResource.api`` accepts.
API_CHOICES = ("auto", "v1", "v2")
DEFAULT_DATABASE = "telemetry"
DEFAULT_API = "auto"


class InfluxDBConfigError(TerminalInfluxError, ValueError):
    """A connection setting is missing or malformed; the message names the setting and what it accepts."""


def normalize_api(value: str | None, setting: str = "InfluxDBResource.api") -> str:
    """``value`` lower-cased if it is one of :data:`API_CHOICES` (empty or None means ``auto``)."""
    text = (value or DEFAULT_API).strip().lower()
    if text not in API_CHOICES:
        raise InfluxDBConfigError(
            f"{setting} is {value!r}; accepted values are 'auto' (ask the server), 'v1' (InfluxDB 1.x "
            "and 3.x) and 'v2' (InfluxDB 2.x and Cloud)"
        )
    return text


def check_url(value: str | None, setting: str = "InfluxDBResource.url") -> str:
    """``value`` stripped if it is an ``http(s)://host[:port]`` URL; raises naming ``setting`` otherwise.

    The message never repeats a ``user:password@`` part of the URL.
    """
    text = (value or "").strip()
    if not text:
        raise InfluxDBConfigError(
            f"{setting} is not set; set it to the base URL of your InfluxDB, e.g. http://127.0.0.1:8086"
        )
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:  # a port that is not a number
        parts, port_ok = urlsplit(""), False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        shown = text if "@" not in text else "<a URL with credentials>"
        raise InfluxDBConfigError(
            f"{setting} is {shown!r}, which is not an http:// or https:// URL with a host; "
            "set it like http://127.0.0.1:8086"
        )
    return text


def check_secret(value: str | None, setting: str) -> str | None:
    """``value`` if it can go into an HTTP header; never repeats it in the error."""
    if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InfluxDBConfigError(
            f"{setting} contains a control character (a line break?), which cannot be sent in an HTTP "
            "header; remove it (the value is not shown)"
        )
    return value


def settings_from_env(environ: Mapping[str, str] | None = None, prefix: str = "INFLUXDB_") -> dict[str, str | None]:
    """Keyword arguments for ``InfluxDBResource`` from ``<prefix>URL``, ``<prefix>DATABASE``, ... .

    Unset and empty variables take the defaults in the module docstring; ``URL`` and ``API`` are
    validated here, so a bad value fails at once with a sentence naming the variable.

    Examples:
        >>> settings_from_env({"INFLUXDB_URL": "http://db:8086"})["database"]
        'telemetry'
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = (env.get(prefix + name) or "").strip()  # a secret read from a file often ends in "\n"
        return value or None

    return {
        "url": check_url(get("URL"), prefix + "URL"),
        "database": get("DATABASE") or DEFAULT_DATABASE,
        "api": normalize_api(get("API"), prefix + "API"),
        "token": check_secret(get("TOKEN"), prefix + "TOKEN"),
        "org": get("ORG"),
        "username": get("USERNAME"),
        "password": check_secret(get("PASSWORD"), prefix + "PASSWORD"),
    }
