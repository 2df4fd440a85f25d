"""CurveZMQ key pairs on disk: generate them (for ``crucible keys``) and load them back.

A key pair is two files written by ``zmq.auth.create_certificates``: ``<name>.key`` (public key only, safe to
hand out) and ``<name>.key_secret`` (public and secret key, readable by its owner only). Keys are 40-character
Z85 strings.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

__all__ = ["generate_keypair", "load_public_key", "load_keypair", "check_z85_key"]

_Z85_ALPHABET = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def generate_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write a new CurveZMQ key pair ``<name>.key`` and ``<name>.key_secret`` into ``directory``.

    The directory is created if needed; the secret file is made readable by its owner only. Existing files
    of that name are not overwritten.

    Args:
        directory: where to write the two files.
        name: the pair's name, e.g. ``"xrd-1"`` or ``"orchestrator"`` (letters, digits, ``-``, ``_``, ``.``).

    Returns:
        ``(public_key_path, secret_key_path)``.

    Raises:
        ValueError: the name is empty or has other characters.
        FileExistsError: a key pair of that name already exists.
    """
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"key name must be letters, digits, '-', '_' or '.', got {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    public_file, secret_file = zmq.auth.create_certificates(folder, name)
    os.chmod(secret_file, 0o600)
    return Path(public_file), Path(secret_file)


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key stored in a ``.key`` or ``.key_secret`` file."""
    public, _ = zmq.auth.load_certificate(os.fspath(path))
    return check_z85_key(public, f"public key in {path}")


def load_keypair(secret_path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public_key, secret_key)`` in Z85 from a ``.key_secret`` file.

    Raises:
        ValueError: the file holds no secret key.
    """
    public, secret = zmq.auth.load_certificate(os.fspath(secret_path))
    if secret is None:
        raise ValueError(f"{secret_path} holds no secret key (pass the .key_secret file)")
    return (
        check_z85_key(public, f"public key in {secret_path}"),
        check_z85_key(secret, f"secret key in {secret_path}"),
    )


def check_z85_key(key: bytes | str, what: str = "key") -> bytes:
    """Return ``key`` as bytes if it is a 40-character Z85 CurveZMQ key.

    Raises:
        ValueError: naming ``what`` and the problem.
    """
    raw = key.encode("ascii", "replace") if isinstance(key, str) else bytes(key)
    if len(raw) != 40:
        raise ValueError(f"{what} must be 40 Z85 characters, got {len(raw)}")
    if not set(raw) <= _Z85_ALPHABET:
        raise ValueError(f"{what} has characters outside the Z85 alphabet")
    return raw
