"""System users' passwords: generation, validation and the secret content they are stored in."""

from __future__ import annotations

import string

import ops
import pytest

from components import system_users
from workload import layout


def test_generated_password_has_the_configured_length_and_alphabet():
    password = system_users.generate_password()
    assert len(password) == system_users.PASSWORD_LENGTH == 32
    assert set(password) <= set(string.ascii_letters + string.digits)


def test_generated_passwords_are_distinct():
    passwords = {system_users.generate_password() for _ in range(50)}
    assert len(passwords) == 50


def test_generated_passwords_pass_validation():
    for _ in range(20):
        system_users.validate_password(system_users.generate_password())


@pytest.mark.parametrize(
    "password",
    [
        "abcdefgh",  # the minimum length
        "x" * 256,  # the maximum length
        "Tr0ub4dor&3!",
        "p@ss:w/rd;#%{}[]()<>?,.~^|=+-_*$",
    ],
)
def test_validate_password_accepts_safe_passwords(password: str):
    system_users.validate_password(password)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "must not be empty"),
        ("short", "8 to 256 characters"),
        ("abcdefg", "8 to 256 characters"),
        ("x" * 257, "8 to 256 characters"),
        ("with space", "whitespace"),
        ("with\ttab1", "whitespace"),
        ("new\nline1", "whitespace"),
        ("single'quote", "quotes"),
        ('double"quote', "quotes"),
        ("back`tick99", "quotes"),
        ("back\\slash", "backslash"),
        ("nul\x00char1", "letters, digits and punctuation"),
        ("pässwörter", "letters, digits and punctuation"),
        ("emoji🙂emoji", "letters, digits and punctuation"),
    ],
)
def test_validate_password_rejects_with_a_clear_message(password: str, message: str):
    with pytest.raises(system_users.InvalidPasswordError, match=message) as caught:
        system_users.validate_password(password)
    # A rejected password is never echoed back: the message goes to the action's output.
    if password:
        assert password not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_initial_content_has_one_fresh_password_per_user():
    content = system_users.initial_content()
    assert set(content) == {user.secret_key for user in layout.SystemUser}
    assert len(set(content.values())) == len(content)
    for password in content.values():
        system_users.validate_password(password)


def test_passwords_from_content_maps_keys_to_users():
    content = {user.secret_key: f"pw-{user.value}" for user in layout.SystemUser}
    passwords = system_users.passwords_from_content(content)
    assert passwords is not None
    assert passwords[layout.SystemUser.OPERATOR] == "pw-operator"
    assert passwords[layout.SystemUser.PATRONI] == "pw-patroni"
    assert set(passwords) == set(layout.SystemUser)


def test_passwords_from_content_ignores_unknown_keys():
    content = system_users.initial_content() | {"unrelated": "value"}
    passwords = system_users.passwords_from_content(content)
    assert passwords is not None
    assert len(passwords) == len(layout.SystemUser)


@pytest.mark.parametrize("user", list(layout.SystemUser))
def test_passwords_from_content_is_none_when_a_user_is_missing(user: layout.SystemUser):
    content = system_users.initial_content()
    del content[user.secret_key]
    assert system_users.passwords_from_content(content) is None


@pytest.mark.parametrize("user", list(layout.SystemUser))
def test_passwords_from_content_is_none_when_a_password_is_empty(user: layout.SystemUser):
    content = system_users.initial_content() | {user.secret_key: ""}
    assert system_users.passwords_from_content(content) is None


def test_passwords_from_empty_content_is_none():
    assert system_users.passwords_from_content({}) is None


def test_passwords_to_content_round_trip():
    content = system_users.initial_content()
    passwords = system_users.passwords_from_content(content)
    assert passwords is not None
    assert system_users.passwords_to_content(passwords) == content
    assert system_users.passwords_from_content(system_users.passwords_to_content(passwords)) == (
        passwords
    )


def test_passwords_to_content_uses_secret_keys():
    content = system_users.passwords_to_content({layout.SystemUser.REWIND: "rewind-secret"})
    assert content == {"rewind-password": "rewind-secret"}


# create() and read() against minimal stand-ins for ops' Application and Model


class FakeSecret:
    def __init__(self, content: dict[str, str]):
        self.content = content
        self.refreshed: list[bool] = []

    def get_content(self, *, refresh: bool = False) -> dict[str, str]:
        self.refreshed.append(refresh)
        return self.content


class FakeModel:
    def __init__(self, secret: FakeSecret | None = None, error: Exception | None = None):
        self.secret = secret
        self.error = error
        self.lookups: list[dict[str, str | None]] = []

    def get_secret(self, *, id: str | None = None, label: str | None = None) -> FakeSecret:
        self.lookups.append({"id": id, "label": label})
        if self.error:
            raise self.error
        assert self.secret is not None
        return self.secret


def test_create_adds_an_application_secret_with_fresh_passwords():
    calls: list[tuple[dict[str, str], dict[str, str]]] = []

    class FakeApp:
        def add_secret(self, content: dict[str, str], **kwargs: str) -> str:
            calls.append((content, kwargs))
            return "secret"

    assert system_users.create(FakeApp()) == "secret"  # type: ignore[arg-type]
    ((content, kwargs),) = calls
    assert kwargs["label"] == "system-users"
    assert system_users.passwords_from_content(content) is not None
    assert len(set(content.values())) == len(layout.SystemUser)


def test_read_by_label_refreshes_the_content():
    secret = FakeSecret(system_users.initial_content())
    model = FakeModel(secret)
    passwords = system_users.read(model, None)  # type: ignore[arg-type]
    assert passwords == system_users.passwords_from_content(secret.content)
    assert model.lookups == [{"id": None, "label": "system-users"}]
    assert secret.refreshed == [True]


def test_read_by_id():
    model = FakeModel(FakeSecret(system_users.initial_content()))
    assert system_users.read(model, "secret:abc") is not None  # type: ignore[arg-type]
    assert model.lookups == [{"id": "secret:abc", "label": None}]


def test_read_incomplete_content_is_none():
    model = FakeModel(FakeSecret({"operator-password": "only-one-password"}))
    assert system_users.read(model, None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error", [ops.SecretNotFoundError("not found"), ops.ModelError("permission denied")]
)
def test_read_unreadable_secret_is_none(error: Exception):
    assert system_users.read(FakeModel(error=error), "secret:abc") is None  # type: ignore[arg-type]
