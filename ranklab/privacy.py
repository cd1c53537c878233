"""Pseudonymised user ids: the one keyed hash every stored user id goes through.

A user id is personal data. The prediction log and the monitoring outputs keep, instead of
it, ``pseudonym(user_id) = first 8 bytes of HMAC-SHA256(key, str(user_id))`` as a signed
int64. Without the key the pseudonym cannot be linked back to a user (ids are small
integers: an unkeyed hash would be reversed by hashing every id); with it, the same user
gets the same pseudonym in every store, process and day, so the joins and groupings that
need "the same user" (the A/B readout's randomisation unit, its CUPED covariates) still
work. int64 keeps the stored column as compact as the id it replaces; at 64 bits two of a
million users collide with probability ~3e-8.

The key (``Settings.privacy.pseudonym_key``, env ``RANKLAB_PRIVACY__PSEUDONYM_KEY``):
- configured: used as given (at least ``MIN_KEY_CHARS`` characters);
- unset, ``local`` profile: a development key generated once into
  ``<state>/secrets/pseudonym.key`` (mode 0600, never in the repository); deleting the state
  folder deletes it, and with it every link between stored pseudonyms and users;
- unset, ``services`` profile: refused (``PseudonymKeyError``): a shared deployment must not
  invent its own key.

Rotating the key unlinks everything stored before from everything stored after: do it
together with deleting the old partitions (``pipelines/defs/retention.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ranklab.settings import Settings, get_settings

KEY_ENV = "RANKLAB_PRIVACY__PSEUDONYM_KEY"
MIN_KEY_CHARS = 32
KEY_FILE = Path("secrets") / "pseudonym.key"


class PseudonymKeyError(RuntimeError):
    """No usable pseudonymisation key (services profile without one, or one too short)."""


class Pseudonymiser:
    """``pseudonym(user_id)``: a keyed, stable, non-reversible int64 for a user id."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise PseudonymKeyError(
                f"the pseudonymisation key has {len(key)} bytes; at least {MIN_KEY_CHARS} "
                f"are needed ({KEY_ENV})"
            )
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self._cache: dict[int, int] = {}

    def __call__(self, user_id: int) -> int:
        # Cached: a marketplace has far fewer users than requests, and the request path
        # pays ~1 us per HMAC otherwise. Bounded by the number of distinct users served.
        cached = self._cache.get(user_id)
        if cached is None:
            mac = self._hmac.copy()
            mac.update(str(int(user_id)).encode())
            cached = int.from_bytes(mac.digest()[:8], "big", signed=True)
            if len(self._cache) < 1_000_000:
                self._cache[user_id] = cached
        return cached

    def many(self, user_ids: Iterable[int]) -> np.ndarray:
        """Pseudonyms of ``user_ids`` as an int64 array (for frames keyed by user)."""
        return np.fromiter((self(int(u)) for u in user_ids), dtype=np.int64)

    def __repr__(self) -> str:  # never print the key
        return "Pseudonymiser(key=**********)"


def pseudonymiser_for(settings: Settings) -> Pseudonymiser:
    """The pseudonymiser of ``settings``' deployment (see the module docstring)."""
    return _cached(settings.root, settings.profile, _configured_key(settings))


def default_pseudonymiser() -> Pseudonymiser:
    """The pseudonymiser of the settings in the environment (``get_settings()``): what a
    ``PredictionLog`` built without one uses."""
    return pseudonymiser_for(get_settings())


def _configured_key(settings: Settings) -> str | None:
    key = settings.privacy.pseudonym_key
    return None if key is None else key.get_secret_value()


@lru_cache(maxsize=16)
def _cached(root: Path, profile: str, configured: str | None) -> Pseudonymiser:
    if configured is not None:
        return Pseudonymiser(configured.encode())
    if profile == "services":
        raise PseudonymKeyError(
            f"the services profile needs a pseudonymisation key: set {KEY_ENV} "
            f"(at least {MIN_KEY_CHARS} random characters, kept out of the repository)"
        )
    return Pseudonymiser(development_key(root))


def development_key(root: Path) -> bytes:
    """The local profile's key: ``<root>/secrets/pseudonym.key``, generated on first use.

    Two server workers start together: the key is written to a private file and linked
    into place, so exactly one generated key wins and both read it.
    """
    path = Path(root) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process linked its key first: use that one
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()
