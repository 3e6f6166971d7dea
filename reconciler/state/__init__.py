"""The record of applied secrets (SPEC §5): per connector id, the SecretDigest kcr last sent, the
only way to tell "the source rotated" from "unchanged" since Kibana never returns secrets.

- `record`: the document (format, the Kibana it belongs to, the key check) and its parsing; the
  record's spelling of a Kibana URL and its default file name.
- `backend`: the `RecordBackend` interface, `locked`, and `lock_info`, what every lock says.
- `file`: a local JSON file, written atomically, locked by a lock file beside it.
- `http`: Terraform's HTTP backend protocol (GitLab-managed Terraform state).
- `config`: `backend_from_env`, which backend the flags and environment choose.
"""

from reconciler.state.backend import RecordBackend, lock_info, locked
from reconciler.state.config import backend_from_env
from reconciler.state.file import FileBackend
from reconciler.state.http import HttpBackend
from reconciler.state.record import default_record_path, fingerprint_key, key_check, normalize_kibana_url

__all__ = [
    "FileBackend",
    "HttpBackend",
    "RecordBackend",
    "backend_from_env",
    "default_record_path",
    "fingerprint_key",
    "key_check",
    "lock_info",
    "locked",
    "normalize_kibana_url",
]
