"""kibana.yml from the desired state: `kcr render kibana-yml` (the `xpack.actions.preconfigured` block of
the connectors the files place there, with their secrets for Kibana's keystore or an ECK Secret) and
`kcr render allowed-hosts` (`xpack.actions.allowedHosts` and `enabledActionTypes` for every declared
connector). One reviewed source for both ways of running connectors: the same name, type, config
(checked by the same schemas, after `${var:}`) and secret references as the API connectors.

Design choices:
- **Ids.** Each block is keyed by the connector's Kibana id (`uuid5("<space>/<key>")`, or the UUID
  declared), the id it has as an API connector: rules that name it keep working when a connector moves
  between the API and kibana.yml, or differs between environments.
- **Secrets never in the kibana.yml.** Kibana reads its keystore into its settings at start-up, every
  entry by its dotted path, before the settings are validated (src/cli/serve/serve.js,
  `applyConfigOverrides`: `merge(readKeystore())`; src/cli/keystore/lib/read_keystore.ts: lodash `set`
  per key), so `xpack.actions.preconfigured.<id>.secrets.<key>` in the keystore fills that secret. By
  default the command writes the settings' names and a script that fills them; `--format eck` writes a
  Kubernetes Secret for ECK's `secureSettings` instead; `--secrets-in-file` writes them in clear (only
  when asked: a secret whose path cannot be a keystore setting needs it).
- **The script holds no value.** Each line runs `kcr render keystore-value ... --keystore BIN SETTING`,
  which resolves the reference then (environment, file or Vault, as plan does) and runs
  `BIN add --stdin --force SETTING` with the value on a pipe: never on disk, in a shell variable or an
  argument, and nothing is added when the reference cannot be read (a `kcr ... | kibana-keystore add
  --stdin` pipe would store an empty value).
- **Keystore values are JSON-parsed** by `kibana-keystore add` (src/cli/keystore/add.ts: "The value will
  be JSON parsed"), so a value that would parse as JSON (`12345`, `true`) or lose surrounding blanks to
  its trim is sent JSON-quoted; any other is sent as it is.
- **Allowed hosts** are `type_rules.checked_urls` of each connector, the very list Kibana's checks (and
  the sandbox) use: URL fields, default URLs (PagerDuty's events API), fixed endpoints (Slack's API) and
  hosts a service implies (email's SMTP hosts). A host inside a secret (a Slack or Teams webhook) is
  known offline only when the template writes it (`https://hooks.slack.com/services/${env:X}`);
  otherwise it is listed as unknown unless `--resolve-secrets` reads the secret (only its host is ever
  printed). `enabledActionTypes` lists the API connectors' types: Kibana runs a preconfigured connector
  whatever that list says (x-pack/plugins/actions/server/action_type_registry.ts, isActionExecutable).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler import catalog, type_rules
from reconciler.desired import owner_label
from reconciler.errors import ConfigError
from reconciler.jsurl import host_of
from reconciler.model import ConnectorSpec, DesiredState
from reconciler.references import parse_template
from reconciler.secrets import SecretResolver

PREFIX = "xpack.actions.preconfigured"
_SETTING_PART = re.compile(r"^[A-Za-z0-9_-]+$")  # a dotted path's part: no dot, nothing lodash reads as syntax
_K8S_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_URL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]+[/?#]", re.IGNORECASE)
Path_ = tuple[str | int, ...]


def preconfigured(desired: DesiredState) -> list[ConnectorSpec]:
    """The connectors kibana.yml holds in this environment, by id."""
    return sorted((s for space in desired.spaces.values() for s in space.connectors if s.preconfigured),
                  key=lambda s: s.id)


def _plain(spec: ConnectorSpec, key: str, value: Any) -> bool:
    """A selector among the secrets (`x-kcr-plain`, e.g. a spec connector's authType): no secret."""
    ctype = catalog.get(spec.type)
    return ctype is not None and ctype.is_plain_value(key, value)


def secret_leaves(spec: ConnectorSpec) -> list[tuple[Path_, Any]]:
    """Each secret value's path under `secrets` with its template; plain selectors left out."""
    out: list[tuple[Path_, Any]] = []

    def walk(value: Any, path: Path_) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif value is not None:
            out.append((path, value))

    for key, value in spec.secrets.items():
        if not _plain(spec, key, value):
            walk(value, (key,))
    return out


def setting(spec: ConnectorSpec, path: Path_) -> str:
    return ".".join([PREFIX, spec.id, "secrets", *map(str, path)])


def _unsettable(spec: ConnectorSpec, path: Path_) -> bool:
    """A path Kibana's lodash `set` would not read back as written (a dot or bracket in a part)."""
    return not all(_SETTING_PART.match(str(p)) for p in (spec.id, *path))


def keystore_text(value: Any) -> str:
    """What to give `kibana-keystore add --stdin` so that Kibana reads back `value` exactly."""
    if isinstance(value, str) and value == value.strip():
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Rendered:
    """`kibana_yml`: the fragment (no secret unless `--secrets-in-file`); `secrets`: the keystore script
    (no value) or the ECK manifest (values), None when no connector has secrets or they are in the file."""

    kibana_yml: str
    secrets: str | None = None
    settings: tuple[str, ...] = ()
    holds_values: bool = False  # `secrets` carries values (ECK): written only where the user says, with a warning


def kibana_yml(desired: DesiredState, *, fmt: str = "keystore", secrets_in_file: bool = False,
               resolver: SecretResolver | None = None, root: Path | None = None, secret_name: str | None = None,
               kcr: str = "kcr") -> Rendered:
    """The preconfigured block, and its secrets as `fmt` asks ("keystore": the script; "eck": a Secret).
    `resolver` is needed only for values (`--secrets-in-file`, "eck"). Refuses, before anything is
    written, a secret the keystore cannot carry unless `secrets_in_file`."""
    specs = preconfigured(desired)
    if not secrets_in_file:
        bad = [f"{owner_label(s)} secrets.{'.'.join(map(str, p))}" for s in specs for p, _ in secret_leaves(s)
               if _unsettable(s, p) or (fmt == "eck" and not _K8S_KEY.match(setting(s, p)))]
        if bad:
            raise ConfigError(f"{', '.join(bad)}: the path cannot be a Kibana keystore setting (a '.' or bracket in "
                              "a key is read as structure); rename the key, or write the secrets into kibana.yml "
                              "with --secrets-in-file (in clear: protect that file)")
    values = _resolved(specs, resolver) if secrets_in_file or (fmt == "eck" and specs) else {}
    block: dict[str, Any] = {}
    for spec in specs:
        body: dict[str, Any] = {"name": spec.name, "actionTypeId": spec.type}
        if spec.config:
            body["config"] = dict(spec.config)
        plain = {k: v for k, v in spec.secrets.items() if _plain(spec, k, v)}
        shown = values.get(spec.id, {}) if secrets_in_file else plain
        if shown:
            body["secrets"] = shown
        block[spec.id] = body
    where = f" (environment {desired.environment})" if desired.environment else ""
    head = [f"# kcr render kibana-yml{where}: {len(specs)} preconfigured connector(s), keyed by Kibana id."]
    settings = tuple(setting(s, p) for s in specs for p, _ in secret_leaves(s))
    if secrets_in_file and settings:
        head.append("# SECRETS IN CLEAR (--secrets-in-file): keep this file out of Git and readable by Kibana only.")
    elif settings:
        head.append(f"# Secrets are keystore settings ({len(settings)}), not in this file: "
                    + ("the ECK Secret" if fmt == "eck" else "run the keystore script") + " to fill them.")
    text = "\n".join(head) + "\n" + _yaml({PREFIX: block} if block else {PREFIX: {}})
    if secrets_in_file or not settings:
        return Rendered(text, None, settings)
    if fmt == "eck":
        return Rendered(text, _eck(specs, values, secret_name or _secret_name(desired)), settings, holds_values=True)
    return Rendered(text, _script(desired, specs, root, kcr), settings)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _resolved(specs: Sequence[ConnectorSpec], resolver: SecretResolver | None) -> dict[str, dict[str, Any]]:
    """Each connector's secrets with their values (SecretError names every reference that fails)."""
    if resolver is None:
        raise ConfigError("secret values are needed here, and nothing was given to resolve them")
    owners = {owner_label(s): s for s in specs if s.secrets}
    resolved = resolver.resolve_many({o: s.secrets for o, s in owners.items()})
    return {owners[o].id: r.payload() for o, r in resolved.items()}


def _at(value: Any, path: Path_) -> Any:
    for part in path:
        value = value[part]
    return value


def _shell(word: str) -> str:
    return "'" + word.replace("'", "'\"'\"'") + "'"


def _script(desired: DesiredState, specs: Sequence[ConnectorSpec], root: Path | None, kcr: str) -> str:
    env = f" --env {_shell(desired.environment)}" if desired.environment else ""
    where = f" --dir {_shell(str(root))}" if root is not None else ""
    lines = ["#!/bin/sh",
             "# Written by `kcr render kibana-yml`. It holds no secret value: each line has kcr resolve one",
             "# reference now and pipe it into `$KIBANA_KEYSTORE add --stdin --force SETTING` (never on disk).",
             "# Run it where kcr can read the references (variables, files, Vault), as the user running Kibana.",
             "set -eu", 'KIBANA_KEYSTORE="${KIBANA_KEYSTORE:-bin/kibana-keystore}"', ""]
    for spec in specs:
        for path, template in secret_leaves(spec):
            name = setting(spec, path)
            refs = ", ".join(r.text for r in parse_template(template).references) if isinstance(template, str) else ""
            lines.append(f"# {owner_label(spec)}: secrets.{'.'.join(map(str, path))} <- {refs or 'a literal'}")
            lines.append(f'{kcr} render keystore-value{where}{env} --keystore "$KIBANA_KEYSTORE" {_shell(name)}')
    return "\n".join(lines) + "\n"


def _secret_name(desired: DesiredState) -> str:
    return "kcr-kibana-preconfigured" + (f"-{desired.environment}" if desired.environment else "")


def _eck(specs: Sequence[ConnectorSpec], values: Mapping[str, Any], name: str) -> str:
    """A Secret for the Kibana resource's `spec.secureSettings: [{secretName: NAME}]`: ECK adds each key
    to Kibana's keystore with its value (hence the keystore encoding)."""
    data = {setting(s, p): base64.b64encode(keystore_text(_at(values[s.id], p)).encode()).decode()
            for s in specs for p, _ in secret_leaves(s)}
    head = (f"# kcr render kibana-yml --format eck: SECRET VALUES (base64 is no protection). Reference it from the\n"
            f"# Kibana resource: spec.secureSettings: [{{secretName: {name}}}]; apply it, never commit it.\n")
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}
    return head + _yaml(body)


def keystore_value(desired: DesiredState, name: str, resolver: SecretResolver) -> str:
    """The keystore text of one setting the script names, resolved now."""
    for spec in preconfigured(desired):
        for path, template in secret_leaves(spec):
            if setting(spec, path) == name:
                resolved = resolver.resolve_many({owner_label(spec): {"v": template}})
                return keystore_text(next(iter(resolved.values())).payload()["v"])
    raise ConfigError(f"{name} is not a secret of a preconfigured connector of this repository"
                      + (f" in environment {desired.environment!r}" if desired.environment else "")
                      + "; render the script again (`kcr render kibana-yml`)")


# --- allowed hosts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hardening:
    """What the declared connectors need from kibana.yml: hosts (each with the connectors that need it),
    the API connectors' types, the preconfigured connectors' types, and what kcr could not tell."""

    hosts: Mapping[str, tuple[str, ...]]
    api_types: tuple[str, ...]
    preconfigured_types: tuple[str, ...]
    unknown: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"allowedHosts": sorted(self.hosts), "enabledActionTypes": list(self.api_types),
                "preconfiguredTypes": list(self.preconfigured_types), "unknown": list(self.unknown),
                "neededBy": {h: list(c) for h, c in sorted(self.hosts.items())}}

    def text(self, environment: str | None) -> str:
        where = f" (environment {environment})" if environment else ""
        lines = [f"# kcr render allowed-hosts{where}: what the declared connectors need.",
                 *(f"# not listed: {u}" for u in self.unknown)]
        if self.preconfigured_types:
            lines.append(f"# preconfigured connectors run whatever enabledActionTypes says: "
                         f"{', '.join(self.preconfigured_types)}")
        body = {"xpack.actions.allowedHosts": sorted(self.hosts),
                "xpack.actions.enabledActionTypes": list(self.api_types)}
        return "\n".join(lines) + "\n" + _yaml(body)


def _static_host(template: str) -> str | None:
    """The host a secret's template writes before its first reference (`https://host/${env:X}`)."""
    text = template.split("${", 1)[0] if "${" in template else template
    if "${" in template and not _URL_PREFIX.match(text):
        return None
    return host_of(text)


def _urls(spec: ConnectorSpec, secrets: Mapping[str, Any] | None) -> Iterator[tuple[str, str | None, str | None]]:
    """(field, url or host, why unknown) of each URL Kibana checks for the connector."""
    config = catalog.with_defaults(spec.type, "config", spec.config)
    for key, url in type_rules.checked_urls(spec.type, "config", config):
        yield f"config.{key}" if key else "config (implied)", host_of(url), None
    filled = secrets if secrets is not None else spec.secrets
    for key, url in type_rules.checked_urls(spec.type, "secrets", filled):
        where = f"secrets.{key}" if key else "secrets (implied)"
        if secrets is not None or key is None:
            yield where, host_of(url), None
        elif (host := _static_host(url)) is not None:
            yield where, host, None
        else:
            yield where, None, "its host is in the secret; --resolve-secrets reads it, or add it by hand"


def hardening(desired: DesiredState, resolver: SecretResolver | None = None) -> Hardening:
    """With `resolver`, secrets are read to learn the hosts they hold (values never leave this function)."""
    specs = [s for space in desired.spaces.values() for s in space.connectors]
    values = _resolved(specs, resolver) if resolver is not None else {}
    hosts: dict[str, set[str]] = {}
    unknown: list[str] = []
    for spec in specs:
        label = f"{spec.space}/{spec.key}"
        if catalog.get(spec.type) is None:
            unknown.append(f"{label} ({spec.type}): kcr knows no URL fields of this type; add its hosts by hand")
            continue
        for where, host, why in _urls(spec, values.get(spec.id, {}) if resolver is not None else None):
            if host is None:
                unknown.append(f"{label} {where}: {why or 'not a URL kcr can read a host from'}")
            else:
                hosts.setdefault(host, set()).add(label)
    api = sorted({s.type for s in specs if not s.preconfigured})
    pre = sorted({s.type for s in specs if s.preconfigured} - set(api))
    return Hardening({h: tuple(sorted(c)) for h, c in hosts.items()}, tuple(api), tuple(pre), tuple(unknown))
