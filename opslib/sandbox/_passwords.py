"""Password hashes in the platform's format.

The platform stores PBKDF2-HMAC-SHA256 (100,000 iterations, 16-byte random salt,
32-byte output) as 96 lowercase hex characters: salt then hash, no separator and no
algorithm tag (PLATFORM.md section 4).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

ITERATIONS = 100_000
SALT_BYTES = 16
HASH_BYTES = 32

_HEX96 = re.compile(r"^[0-9a-f]{96}$")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password the way the platform's register and reset routes do.

    Args:
        password: the clear-text password.
        salt: 16 bytes of salt; a random one when omitted.

    Returns:
        96 lowercase hex characters, salt followed by the derived key.
    """
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), salt, ITERATIONS, HASH_BYTES
    )
    return salt.hex() + derived.hex()


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash in constant time.

    A stored value that is not 96 lowercase hex characters (such as the seed
    admin's bcrypt-style placeholder) never matches, as on the platform.
    """
    if not _HEX96.match(stored or ""):
        return False
    salt = bytes.fromhex(stored[: SALT_BYTES * 2])
    candidate = hash_password(password, salt=salt)
    return hmac.compare_digest(candidate, stored)
