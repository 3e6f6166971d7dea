"""The record of applied secrets behind Terraform's HTTP backend protocol (GitLab-managed Terraform
state): GET/POST the state, LOCK/UNLOCK with Terraform's lock info, so pipelines share one record and
its lock serializes applies. GitLab wants a Terraform-state-shaped document, so the record (the same
object as the file backend's, URL and key check included) rides inside one as `kcr_record`, with a
serial that grows on each save.

A LOCK whose answer is lost may have been taken: it is sent again with the same lock ID until its
outcome is known (`_send_lock`), and a holder with this run's ID proves the first one landed. Every
other request goes through `_send`, which retries a passing failure; both wait as reconciler/retry.py
says, and every attempt, LOCK included, is bounded as a whole by `timeout`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random as _random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from reconciler import __version__, jsondepth
from reconciler.connection import redact_url
from reconciler.deadline import DeadlineClient, deadline
from reconciler.errors import StateError
from reconciler.model import SecretDigest
from reconciler.retry import RetryPolicy
from reconciler.state.backend import LockInfoArg, describe_holder, lock_id_of, lock_info
from reconciler.state.record import (
    Stored,
    check_to_write,
    foreign_error,
    is_foreign,
    normalize_kibana_url,
    parse_record,
    record_json,
    usable_record,
)

log = logging.getLogger("kcr.state")

HTTP_TIMEOUT = 30.0
HTTP_RETRIES = 3
_LOCK_OUTCOME_UNKNOWN = frozenset({500, 502, 504})
_HTTP_ADVICE = "set KCR_RECORD_GITLAB_STATE (or KCR_RECORD_HTTP_ADDRESS) per Kibana, e.g. kcr-<environment>"


def _holder_in(response: httpx.Response) -> Any:
    """The lock info of a 409/423, None when the body is not JSON."""
    try:
        return jsondepth.loads(response.content)
    except ValueError:
        return None


@dataclass
class HttpBackend:
    """Terraform's HTTP backend protocol. The record is wrapped in a Terraform-state-shaped document
    whose serial grows with each save (GitLab versions states by serial)."""

    address: str
    lock_address: str | None = None
    unlock_address: str | None = None
    lock_method: str = "LOCK"
    unlock_method: str = "UNLOCK"
    update_method: str = "POST"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    transport: httpx.BaseTransport | None = field(default=None, repr=False)
    verify: bool = True
    kibana_url: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)  # sleep and random: the retry policy's
    random: Callable[[], float] = field(default=_random.random, repr=False)  # (reconciler/retry.py), for tests
    fingerprint_key: bytes | None = field(default=None, repr=False)  # KCR_FINGERPRINT_KEY, for the key check
    timeout: float = HTTP_TIMEOUT  # bounds each whole request, however slowly the server answers
    key_warning: str | None = field(default=None, init=False, repr=False)  # see RecordBackend
    _serial: int | None = field(default=None, init=False, repr=False)
    _owner: str | None = field(default=None, init=False, repr=False)
    _key_check: str | None = field(default=None, init=False, repr=False)  # of the state read or written last
    _stored_any: bool = field(default=False, init=False, repr=False)
    _lineage: str | None = field(default=None, init=False, repr=False)
    _held: dict[str, str] | None = field(default=None, init=False, repr=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kibana_url is not None:
            self.kibana_url = normalize_kibana_url(self.kibana_url)

    def __repr__(self) -> str:
        return f"HttpBackend(address={redact_url(self.address)!r}, locking={self.lock_address is not None})"

    def _http(self) -> httpx.Client:
        if self._client is None:
            auth = (self.username, self.password or "") if self.username else None
            self._client = DeadlineClient(
                auth=auth,
                transport=self.transport,
                timeout=self.timeout,
                verify=self.verify,
                headers={"User-Agent": f"kcr/{__version__}"},
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _retry(self) -> RetryPolicy:
        return RetryPolicy(retries=HTTP_RETRIES, sleep=self.sleep, random=self.random)

    def _once(
        self, method: str, url: str, content: bytes | None, headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One attempt, bounded as a whole by `timeout` however slowly the server answers."""
        with deadline(self.timeout, f"the state backend's {self.timeout:g}s limit"):
            return self._http().request(method, url, content=content, headers=headers, params=params)

    def _send(
        self, method: str, url: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Retries a passing failure (transport, 429, 502-504) with the one retry policy for every call
        but LOCK, whose outcome an ambiguous failure would hide (lock() sends it through `_send_lock`).
        Reads and the whole-state POST are idempotent: the same document at the same serial."""
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        policy = self._retry()
        if (method, url) == (self.lock_method, self.lock_address):
            policy = replace(policy, retries=0, throttled=0)
        try:
            return policy.call(lambda: self._once(method, url, content, headers, params)).response
        except httpx.HTTPError as exc:
            raise StateError(
                f"{method} {redact_url(url)}: the state backend could not be reached ({type(exc).__name__})"
            ) from None

    def _fail(self, method: str, url: str, response: httpx.Response, doing: str) -> StateError:
        hint = ""
        if response.status_code in (401, 403):
            hint = (
                "; check KCR_RECORD_HTTP_USERNAME/KCR_RECORD_HTTP_PASSWORD"
                " (in GitLab CI: CI_JOB_TOKEN, role Maintainer)"
            )
        return StateError(
            f"{method} {redact_url(url)}: the state backend answered {response.status_code} while {doing}{hint}"
        )

    def load(self) -> dict[str, SecretDigest]:
        self.key_warning = None
        record = self._read()
        usable, self.key_warning = usable_record(Stored(record, self._owner, self._key_check), self.kibana_url,
                                                 self.fingerprint_key, redact_url(self.address), _HTTP_ADVICE)
        return usable

    def _check_owner(self, doing: str) -> None:
        if self.kibana_url is not None and is_foreign(self._owner, self.kibana_url) and self._stored_any:
            raise foreign_error(redact_url(self.address), str(self._owner), self.kibana_url, doing, _HTTP_ADVICE)

    def _read(self) -> dict[str, SecretDigest]:
        """The stored record whoever it belongs to; learns serial, lineage, owner and key check for the
        next save."""
        self._owner, self._stored_any, self._key_check = None, False, None
        response = self._send("GET", self.address)
        if response.status_code in (204, 404) or (response.is_success and not response.content.strip()):
            self._serial, self._lineage = 0, self._lineage or str(uuid.uuid4())
            return {}
        if not response.is_success:
            raise self._fail("GET", self.address, response, "reading the record")
        where = redact_url(self.address)
        try:
            doc = jsondepth.loads(response.content)
        except jsondepth.TooDeep as exc:
            raise StateError(f"{where}: the stored state is {exc}; delete that state to start a new record") from None
        except ValueError:
            raise StateError(
                f"{where}: the stored state is not JSON; delete that state to start a new record"
            ) from None
        if not isinstance(doc, Mapping):
            raise StateError(f"{where}: the stored state is not a JSON object")
        serial = doc.get("serial", 0)
        self._serial = serial if isinstance(serial, int) else 0
        lineage = doc.get("lineage")
        self._lineage = lineage if isinstance(lineage, str) and lineage else str(uuid.uuid4())
        if "kcr_record" not in doc:
            if doc.get("resources"):
                raise StateError(
                    f"{where}: this state holds Terraform resources, not a kcr record; give kcr a state of its own "
                    "(KCR_RECORD_GITLAB_STATE=kcr-<environment>)"
                )
            return {}
        record, self._owner, self._key_check = parse_record(
            doc["kcr_record"], where, "delete that state to start a new record")
        self._stored_any = bool(record)
        return record

    def save(self, record: Mapping[str, SecretDigest]) -> None:
        """Follows the serial and lineage of the state read last; under the lock that is the stored one."""
        if self._serial is None:
            self._read()
        self._check_owner("overwrite")
        owner = self.kibana_url or self._owner
        check = check_to_write(self.fingerprint_key, self._key_check)
        serial = (self._serial or 0) + 1
        doc = {
            "version": 4,
            "terraform_version": f"kcr-{__version__}",
            "serial": serial,
            "lineage": self._lineage or str(uuid.uuid4()),
            "outputs": {},
            "resources": [],
            "kcr_record": record_json(record, owner, check),
        }
        params = {"ID": self._held["ID"]} if self._held else None
        response = self._send(self.update_method, self.address, body=doc, params=params)
        if not response.is_success:
            raise self._fail(self.update_method, self.address, response, "saving the record")
        self._serial, self._lineage = serial, str(doc["lineage"])
        self._owner, self._stored_any, self._key_check = owner, bool(record), check

    def lock(self, info: LockInfoArg = None) -> None:
        """A LOCK whose answer was lost may have been taken. The protocol has no "read the lock", but a
        LOCK answers 409/423 with the holder's lock info, so the same LOCK (same lock ID) is sent again:
        a holder with this run's ID proves the first one landed, and the run holds that lock and goes
        on, releasing it at the end like any other. Releasing it and locking anew would add a request
        that can fail too, and open a window in which another run takes the record."""
        if not self.lock_address:
            return  # locking disabled, as in Terraform when lock_address is unset
        holder = lock_info(self.env, info, "")
        response = self._send_lock(self.lock_address, holder)
        if response.status_code in (409, 423):
            current = _holder_in(response)
            if lock_id_of(current) != holder["ID"]:
                raise StateError(
                    f"{redact_url(self.address)}: the record is locked by {describe_holder(current)}; wait for "
                    f"that run to finish, or, if it died, run `kcr force-unlock {lock_id_of(current)}` (GitLab also "
                    "offers Operate > Terraform states > Unlock)"
                )
            log.info("%s: the answer to LOCK was lost, but the lock is this run's (lock id %s)",
                     redact_url(self.address), holder["ID"])
        elif not response.is_success:
            raise self._fail(self.lock_method, self.lock_address, response, "locking the record")
        self._held = holder
        if self.kibana_url is not None:
            try:  # refuse before the apply touches Kibana, not at its first save
                self._read()
                self._check_owner("apply with")
            except StateError:
                with contextlib.suppress(StateError):  # the refusal is the news, not a failed release
                    self.unlock()
                raise

    def _send_lock(self, address: str, holder: Mapping[str, str]) -> httpx.Response:
        """The LOCK, sent again while its outcome is unknown: a broken connection, or a 500/502/504
        (a gateway may answer so after the backend took the lock). Repeating it is safe because it
        carries the same lock ID: it takes a free lock, or is refused with the holder, maybe us."""
        content = json.dumps(holder).encode()
        tries = self._retry().start()
        while True:
            response: httpx.Response | None = None
            try:
                response = self._once(self.lock_method, address, content, {"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            else:
                if response.status_code not in _LOCK_OUTCOME_UNKNOWN:
                    return response
                failure = f"answered {response.status_code}"
            if not tries.again(response):
                break
        raise StateError(
            f"{self.lock_method} {redact_url(address)}: the state backend could not be reached ({failure}), so kcr "
            f"cannot tell whether it took the lock; nothing was applied. Re-run when it is reachable; if that run "
            f"reports the record locked by lock id {holder['ID']}, it is this run's: `kcr force-unlock {holder['ID']}`"
        )

    def unlock(self) -> None:
        if not self.unlock_address or self._held is None:
            return
        response = self._send(self.unlock_method, self.unlock_address, body=self._held, params={"ID": self._held["ID"]})
        if not response.is_success and response.status_code != 404:
            raise self._fail(self.unlock_method, self.unlock_address, response, "unlocking the record")
        self._held = None

    def force_unlock(self, lock_id: str) -> None:
        """Terraform's force-unlock: releases the lock with this ID, whoever took it."""
        if not self.unlock_address:
            raise StateError(f"{redact_url(self.address)}: locking is not configured, so there is no lock to remove")
        self._held = {"ID": lock_id}
        self.unlock()

