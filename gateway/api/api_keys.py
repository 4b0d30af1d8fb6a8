"""API keys: made once, shown once, stored only as a salted scrypt hash in the jobs' bucket.

A key reads ``hpe3d_<id>_<secret>``: ``<id>`` (16 hex digits) names its record,
``auth/keys/<id>.json``, which holds the key's name, whether it is an admin key, when it was made
and revoked, and ``scrypt(secret, salt)``. Checking a key reads its record (so a revoked key is
refused at once, on every replica) and compares hashes in constant time; a process remembers which
secret matched which hash, so scrypt runs once per key and process, not once per request.

The owner of the jobs a key submits is its name (``key:<name>``): keys with the same name share
their jobs, so a key is rotated by making a new one under the same name and revoking the old one.
Neither the key nor its secret is ever logged; only its id is.

``python -m gateway.api.api_keys create --name NAME [--admin]`` (also ``list``, ``revoke ID``) works on
the store named by the HPE3D_S3_* settings: how an operator makes the first admin key of a
deployment (``kubectl exec deploy/gateway -- python -m gateway.api.api_keys create --name ops --admin``).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import secrets
import sys
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from services.common.settings import Settings
from services.common.storage import ObjectNotFound, ObjectStore

KEYS_PREFIX = "auth/keys/"
KEY_PREFIX = "hpe3d_"
_KEY = re.compile(r"^hpe3d_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# scrypt cost: 16 MiB and about 0.1 s per hash on a 2-core machine; keys are random (256 bits), so the hash guards a
# leaked bucket against nothing weaker than brute force of the secret itself.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
VERIFIED_CACHE = 4096  # keys a process remembers having checked


class BadKeyName(ValueError):
    """A key name outside ``KEY_NAME``."""


@dataclass(frozen=True)
class ApiKeyRecord:
    """What is stored of a key: never the key itself."""

    id: str
    name: str
    admin: bool
    created_at: str
    salt: str
    scrypt_hash: str
    revoked_at: str | None = None

    @property
    def user(self) -> str:
        """The owner of the jobs this key submits."""
        return f"key:{self.name}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ApiKeyRecord":
        return cls(**json.loads(data))


def record_key(key_id: str) -> str:
    return f"{KEYS_PREFIX}{key_id}.json"


def _scrypt(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of an API key (as opposed to a JWT)."""
    return text.startswith(KEY_PREFIX)


class ApiKeyStore:
    """Keys in the object store. Blocking calls: the API runs them in a thread."""

    def __init__(self, store: ObjectStore):
        self.store = store
        self._verified: OrderedDict[str, tuple[str, bytes]] = OrderedDict()

    def create(self, name: str, admin: bool = False) -> tuple[ApiKeyRecord, str]:
        """Make a key; returns its record and the key, which exists nowhere else afterwards."""
        if not KEY_NAME.match(name):
            raise BadKeyName(f"key name {name!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a "
                             "letter or digit")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKeyRecord(id=key_id, name=name, admin=admin, created_at=_now(),
                              salt=base64.b64encode(salt).decode(),
                              scrypt_hash=base64.b64encode(_scrypt(secret, salt)).decode())
        self.store.put_bytes(record_key(key_id), record.to_json(), "application/json")
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def get(self, key_id: str) -> ApiKeyRecord | None:
        if not re.fullmatch(r"[0-9a-f]{16}", key_id):
            return None
        try:
            return ApiKeyRecord.from_json(self.store.get_bytes(record_key(key_id)))
        except ObjectNotFound:
            return None

    def list(self) -> list[ApiKeyRecord]:
        records = []
        for key in self.store.list_keys(KEYS_PREFIX):
            try:
                records.append(ApiKeyRecord.from_json(self.store.get_bytes(key)))
            except (ObjectNotFound, ValueError, TypeError):
                continue
        return sorted(records, key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> ApiKeyRecord | None:
        """Mark the key revoked (its record stays, for the list); None when there is no such key."""
        record = self.get(key_id)
        if record is None:
            return None
        if not record.revoked:
            record = ApiKeyRecord(**{**asdict(record), "revoked_at": _now()})
            self.store.put_bytes(record_key(key_id), record.to_json(), "application/json")
        return record

    def verify(self, key: str) -> ApiKeyRecord | None:
        """The record of a valid, unrevoked ``key``; None for anything else."""
        m = _KEY.match(key)
        if m is None:
            return None
        key_id, secret = m.groups()
        record = self.get(key_id)
        if record is None or record.revoked:
            return None
        fingerprint = hashlib.sha256(secret.encode()).digest()
        seen = self._verified.get(key_id)
        if seen is not None and seen[0] == record.scrypt_hash and hmac.compare_digest(seen[1], fingerprint):
            return record
        expected = base64.b64decode(record.scrypt_hash)
        if not hmac.compare_digest(_scrypt(secret, base64.b64decode(record.salt)), expected):
            return None
        self._verified[key_id] = (record.scrypt_hash, fingerprint)
        self._verified.move_to_end(key_id)
        while len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return record


def describe_key(key) -> str:
    """One line about a key (an ``ApiKeyRecord`` or the API's ``KeyView``), as the key commands list it."""
    return (f"{key.id}  {key.name:<24} {'admin' if key.admin else 'user':<5}  created {key.created_at}"
            + (f"  revoked {key.revoked_at}" if key.revoked_at else ""))


def add_key_commands(parser: argparse.ArgumentParser, dest: str) -> None:
    """The subcommands create / list / revoke, of this module's command and of ``hpe3d keys``."""
    sub = parser.add_subparsers(dest=dest, required=True)
    create = sub.add_parser("create", help="make a key and print it (only this once)")
    create.add_argument("--name", required=True, help="who the key is for; keys with one name share their jobs")
    create.add_argument("--admin", action="store_true", help="an admin key: sees every job, manages keys")
    sub.add_parser("list", help="list the keys (never the keys themselves)")
    revoke = sub.add_parser("revoke", help="revoke a key: refused from now on")
    revoke.add_argument("key_id", help="the key's id (as listed)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.api.api_keys",
                                     description="Make, list and revoke API keys in the store of the HPE3D_S3_* settings.")
    add_key_commands(parser, "command")
    args = parser.parse_args(argv)
    keys = ApiKeyStore(ObjectStore.from_settings(Settings.from_env()))
    if args.command == "create":
        try:
            record, key = keys.create(args.name, args.admin)
        except BadKeyName as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"key {record.id} for {record.name}{' (admin)' if record.admin else ''}; shown only now:")
        print(key)
    elif args.command == "list":
        for record in keys.list():
            print(describe_key(record))
    else:
        if keys.revoke(args.key_id) is None:
            print(f"error: no key {args.key_id}", file=sys.stderr)
            return 1
        print(f"key {args.key_id} revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
