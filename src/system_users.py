"""The system users' passwords: one application-owned Juju secret, created by the leader."""

from __future__ import annotations

import secrets
import string

import ops

from workload import layout

SECRET_LABEL = "system-users"  # noqa: S105 (a label, not a password)
PASSWORD_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits
# What set-password accepts: printable ASCII without whitespace or quotes, so a password survives
# every config format it travels through (patroni.yml, pgpass, libpq connection strings).
_ALLOWED = frozenset(string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


class InvalidPasswordError(ValueError):
    """Raised when a password a user supplied cannot be accepted; the message says why."""


def generate_password() -> str:
    """A random password from a URL- and config-safe alphabet."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def validate_password(password: str) -> None:
    """Raise InvalidPasswordError unless the password is safe to use everywhere it goes."""
    if not password:
        raise InvalidPasswordError("the password must not be empty")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidPasswordError(
            f"the password must have {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters"
        )
    if any(c not in _ALLOWED for c in password):
        raise InvalidPasswordError(
            "the password may only contain letters, digits and punctuation other than quotes,"
            " backslash and whitespace"
        )


def initial_content() -> dict[str, str]:
    """Fresh passwords for every system user, keyed as the secret stores them."""
    return {user.secret_key: generate_password() for user in layout.SystemUser}


def passwords_from_content(content: dict[str, str]) -> dict[layout.SystemUser, str] | None:
    """The passwords in a secret's content, or None if any user's is missing."""
    out: dict[layout.SystemUser, str] = {}
    for user in layout.SystemUser:
        value = content.get(user.secret_key)
        if not value:
            return None
        out[user] = value
    return out


def passwords_to_content(passwords: dict[layout.SystemUser, str]) -> dict[str, str]:
    """The secret content holding these passwords."""
    return {user.secret_key: password for user, password in passwords.items()}


def create(app: ops.Application) -> ops.Secret:
    """Create the secret with fresh passwords (leader only)."""
    return app.add_secret(
        initial_content(), label=SECRET_LABEL, description="postgresql-k8s system users"
    )


def read(model: ops.Model, secret_id: str | None) -> dict[layout.SystemUser, str] | None:
    """The current passwords, or None while the secret does not exist or cannot be read."""
    try:
        if secret_id:
            secret = model.get_secret(id=secret_id)
        else:
            secret = model.get_secret(label=SECRET_LABEL)
        return passwords_from_content(secret.get_content(refresh=True))
    except (ops.SecretNotFoundError, ops.ModelError):
        return None
