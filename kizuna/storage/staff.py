"""Staff accounts: an e-mail address to log in with, an argon2id password, a role, an
optional TOTP second factor (required for admins by the console), a console language.

Passwords are hashed with argon2-cffi's defaults: argon2id, RFC 9106's second recommended
profile (t=3 passes, m=64 MiB, p=4 lanes, 16-byte salt, 32-byte hash), above OWASP's minimum
(m=19 MiB, t=2, p=1). A stored hash made with other parameters is re-made at the next login.
Hashing runs in a thread (about 0.1 s of CPU) and never inside a database transaction.

Every change is written to the audit log in the caller's transaction (`audit.record`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from . import audit, staff_sessions
from .errors import Invalid
from .models import STAFF_EMAIL_MAX, STAFF_NAME_MAX, Staff
from .roles import STAFF_ROLES, Role
from .sealed import Sealer, Unreadable

log = logging.getLogger(__name__)

HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (see the module docstring)

# ASVS 2.1.1/2.1.2: at least 12 characters, and long passphrases allowed; no composition rules.
PASSWORD_MIN = 12
PASSWORD_MAX = 128
# Generated passwords: 4 groups of 4 from 54 unambiguous characters (about 92 bits).
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class StaffInvalid(Invalid):
    """A change that cannot be made: `field` names the input, `code` is a stable key the
    console translates (`error.<code>`), the message is English for the command line and
    the REST API (a 400 naming the field, like every `Invalid`)."""

    def __init__(self, field: str, code: str, message: str):
        super().__init__(field, message)
        self.code = code


# -- input --------------------------------------------------------------------------------


def normalize_email(text: str) -> str:
    """The login form of an address: NFKC (full-width letters from a Japanese IME), trimmed,
    lower-cased, checked for shape. Raises `StaffInvalid`."""
    value = unicodedata.normalize("NFKC", text or "").strip().lower()
    if not value or len(value) > STAFF_EMAIL_MAX or _CONTROL.search(value):
        raise StaffInvalid("email", "email_invalid", "not a valid e-mail address")
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise StaffInvalid("email", "email_invalid", "not a valid e-mail address") from None


def clean_display_name(text: str) -> str:
    value = unicodedata.normalize("NFKC", text or "").strip()
    if not value:
        raise StaffInvalid("display_name", "name_required", "a display name is required")
    if len(value) > STAFF_NAME_MAX or _CONTROL.search(value):
        raise StaffInvalid("display_name", "name_invalid", f"at most {STAFF_NAME_MAX} characters, no control characters")
    return value


def check_role(role: str) -> Role:
    if role not in {str(item) for item in STAFF_ROLES}:
        raise StaffInvalid("role", "role_invalid", f"role must be one of {', '.join(STAFF_ROLES)}")
    return Role(role)


def check_password(password: str, *, email: str | None = None) -> None:
    if len(password) < PASSWORD_MIN:
        raise StaffInvalid("password", "password_too_short", f"a password needs at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise StaffInvalid("password", "password_too_long", f"a password has at most {PASSWORD_MAX} characters")
    if "\x00" in password or _CONTROL.search(password.replace("\t", "")):
        raise StaffInvalid("password", "password_invalid", "a password cannot contain control characters")
    if email and password.strip().lower() == email.lower():
        raise StaffInvalid("password", "password_is_email", "the password cannot be the e-mail address")


def generate_password() -> str:
    groups = ("".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


# -- passwords ----------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches. With no hash (no such account) a dummy hash is checked,
    so an unknown address takes as long to refuse as a wrong password."""
    def verify() -> bool:
        try:
            return HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def needs_rehash(password_hash: str) -> bool:
    return HASHER.check_needs_rehash(password_hash)


# -- reading --------------------------------------------------------------------------------


async def get(session: AsyncSession, staff_id: int) -> Staff | None:
    return await session.get(Staff, staff_id)


async def get_by_email(session: AsyncSession, email: str) -> Staff | None:
    return (await session.execute(sa.select(Staff).where(Staff.email == email))).scalar_one_or_none()


async def list_all(session: AsyncSession) -> list[Staff]:
    return list((await session.execute(sa.select(Staff).order_by(Staff.disabled_at.is_not(None), Staff.id))).scalars())


async def count(session: AsyncSession) -> int:
    return (await session.execute(sa.select(sa.func.count()).select_from(Staff))).scalar_one()


async def _enabled_admins(session: AsyncSession) -> int:
    statement = sa.select(sa.func.count()).select_from(Staff).where(Staff.role == Role.ADMIN, Staff.disabled_at.is_(None))
    return (await session.execute(statement)).scalar_one()


# -- changes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewStaff:
    """A checked request to create an account (`prepare` hashes the password outside any
    transaction; `create` stores it)."""

    email: str
    display_name: str
    role: Role
    password_hash: str


async def prepare(*, email: str, display_name: str, role: str, password: str) -> NewStaff:
    address = normalize_email(email)
    name = clean_display_name(display_name)
    checked_role = check_role(role)
    check_password(password, email=address)
    return NewStaff(address, name, checked_role, await hash_password(password))


async def create(session: AsyncSession, new: NewStaff, *, actor: audit.Actor) -> Staff:
    if await get_by_email(session, new.email) is not None:
        raise StaffInvalid("email", "email_taken", "an account with this e-mail address exists")
    staff = Staff(email=new.email, display_name=new.display_name, role=new.role, password_hash=new.password_hash)
    try:
        async with session.begin_nested():
            session.add(staff)
            await session.flush()
    except sa.exc.IntegrityError:
        raise StaffInvalid("email", "email_taken", "an account with this e-mail address exists") from None
    audit.record(session, actor, audit.Action.STAFF_CREATED, target=audit_target(staff), email=staff.email, role=staff.role)
    return staff


def audit_target(staff: Staff) -> str:
    """How the audit log names a staff account: `staff:<id> <e-mail>`."""
    return f"staff:{staff.id} {staff.email}"


async def _keep_an_admin(session: AsyncSession, staff: Staff) -> None:
    if staff.role == Role.ADMIN and staff.disabled_at is None and await _enabled_admins(session) <= 1:
        raise StaffInvalid("role", "last_admin", "this is the only admin left; make someone else admin first")


async def change_role(session: AsyncSession, staff: Staff, role: str, *, actor: audit.Actor) -> bool:
    new_role = check_role(role)
    if staff.role == new_role:
        return False
    if new_role != Role.ADMIN:
        await _keep_an_admin(session, staff)
    old, staff.role = staff.role, new_role
    audit.record(session, actor, audit.Action.STAFF_ROLE_CHANGED, target=audit_target(staff), old=old, new=str(new_role))
    return True


async def disable(session: AsyncSession, staff: Staff, *, actor: audit.Actor, now: datetime) -> bool:
    """Disable the account and end its sessions; it stays in the list (and the audit log)."""
    if staff.disabled_at is not None:
        return False
    if actor.staff_id == staff.id:
        raise StaffInvalid("staff", "cannot_disable_self", "you cannot disable your own account")
    await _keep_an_admin(session, staff)
    staff.disabled_at = now
    ended = await staff_sessions.end_all(session, staff.id, reason="disabled", now=now)
    audit.record(session, actor, audit.Action.STAFF_DISABLED, target=audit_target(staff), sessions_ended=ended)
    return True


async def enable(session: AsyncSession, staff: Staff, *, actor: audit.Actor) -> bool:
    if staff.disabled_at is None:
        return False
    staff.disabled_at = None
    audit.record(session, actor, audit.Action.STAFF_ENABLED, target=audit_target(staff))
    return True


async def end_sessions(
    session: AsyncSession, staff: Staff, *, actor: audit.Actor, now: datetime, keep_session: str | None = None
) -> int:
    """An admin logs a staff member out everywhere (but the admin's own `keep_session`)."""
    ended = await staff_sessions.end_all(session, staff.id, reason="ended_by_admin", now=now, except_id_hash=keep_session)
    audit.record(session, actor, audit.Action.STAFF_SESSIONS_ENDED, target=audit_target(staff), sessions_ended=ended)
    return ended


async def set_password(
    session: AsyncSession, staff: Staff, password_hash: str, *, actor: audit.Actor, now: datetime,
    keep_session: str | None = None,
) -> int:
    """Store a new password hash (from `hash_password`, after `check_password`) and end the
    account's other sessions; returns how many were ended. By the account itself it is
    `account.password_changed`, by anyone else `staff.password_reset`."""
    staff.password_hash = password_hash
    staff.password_changed_at = now
    ended = await staff_sessions.end_all(session, staff.id, reason="password_changed", now=now, except_id_hash=keep_session)
    own = actor.staff_id == staff.id
    action = audit.Action.PASSWORD_CHANGED if own else audit.Action.STAFF_PASSWORD_RESET
    audit.record(session, actor, action, target=audit_target(staff), sessions_ended=ended)
    return ended


async def rehash(session: AsyncSession, staff_id: int, password_hash: str) -> None:
    """A login's re-made hash (same password, current parameters): not an audited change."""
    await session.execute(sa.update(Staff).where(Staff.id == staff_id).values(password_hash=password_hash))


def set_locale(staff: Staff, locale: str) -> None:
    from .models import CONSOLE_LOCALES

    if locale not in CONSOLE_LOCALES:
        raise StaffInvalid("locale", "locale_invalid", f"locale must be one of {', '.join(CONSOLE_LOCALES)}")
    staff.locale = locale


# -- TOTP (RFC 6238: 6 digits, 30 s, SHA-1: what every authenticator app reads) -------------------------

TOTP_ISSUER = "Kizuna"


def totp_enabled(staff: Staff) -> bool:
    return staff.totp_enabled_at is not None


# Secrets stored before they were sealed (migration 0014): base32 only, sealed when next read.
_UNSEALED_SECRET = re.compile(r"[A-Z2-7]+")


def totp_sealer(secret_key: str) -> Sealer:
    """The sealer of TOTP secrets (storage/sealed.py): a copy of the database does not carry them."""
    return Sealer(secret_key, "totp-secret")


def begin_totp(staff: Staff, sealer: Sealer) -> str:
    """The secret being enrolled: a new one unless enrolment has already begun (with a secret
    this installation's key still opens)."""
    try:
        secret = totp_secret(staff, sealer)
    except Unreadable:
        if staff.totp_enabled_at is not None:
            raise
        secret = None
    if secret is None:
        secret = pyotp.random_base32()
        staff.totp_secret = sealer.seal(secret)
    return secret


def totp_secret(staff: Staff, sealer: Sealer) -> str | None:
    """The account's TOTP secret in the clear (None without one; `Unreadable` when sealed with
    another key). One stored before secrets were sealed is sealed now (the caller's transaction
    writes it)."""
    stored = staff.totp_secret
    if stored is None:
        return None
    if _UNSEALED_SECRET.fullmatch(stored):
        staff.totp_secret = sealer.seal(stored)
        return stored
    return sealer.open(stored)


def totp_uri(staff: Staff, sealer: Sealer, issuer: str = TOTP_ISSUER) -> str:
    secret = totp_secret(staff, sealer)
    assert secret is not None
    return pyotp.TOTP(secret).provisioning_uri(name=staff.email, issuer_name=issuer)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code is `code` (this one, the one before or after: clocks drift), or None."""
    digits = unicodedata.normalize("NFKC", code or "").replace(" ", "").replace("-", "")
    if not re.fullmatch(r"[0-9]{6}", digits):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    found = None
    for candidate in (step - 1, step, step + 1):  # compare all three: no early exit
        if hmac.compare_digest(totp.generate_otp(candidate), digits):
            found = candidate
    return found


async def use_totp_code(session: AsyncSession, staff: Staff, code: str, *, now: datetime, sealer: Sealer) -> bool:
    """Whether `code` is good for `staff`'s secret and unused: the step is stored with a
    conditional UPDATE, so a code is accepted once even by two processes at the same time."""
    try:
        secret = totp_secret(staff, sealer)
    except Unreadable:
        log.warning("the two-factor secret of %r was sealed with another KIZUNA_SECRET_KEY: "
                    "`kizuna staff reset-totp --email %s` lets them set it up again", staff.email, staff.email)
        return False
    if secret is None:
        return False
    step = _matching_step(secret, code, now)
    if step is None:
        return False
    statement = (
        sa.update(Staff)
        .where(Staff.id == staff.id, sa.or_(Staff.totp_last_step.is_(None), Staff.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if (await session.execute(statement)).rowcount != 1:
        return False
    set_committed_value(staff, "totp_last_step", step)
    return True


async def confirm_totp(session: AsyncSession, staff: Staff, code: str, *, actor: audit.Actor, now: datetime, sealer: Sealer) -> bool:
    """Finish enrolment with a code from the app; the second factor is then required."""
    if staff.totp_enabled_at is not None or not await use_totp_code(session, staff, code, now=now, sealer=sealer):
        return False
    staff.totp_enabled_at = now
    audit.record(session, actor, audit.Action.TOTP_ENABLED, target=audit_target(staff))
    return True


async def reset_totp(session: AsyncSession, staff: Staff, *, actor: audit.Actor) -> bool:
    """Remove the second factor (the account itself, or an admin for a lost phone)."""
    if staff.totp_secret is None and staff.totp_enabled_at is None:
        return False
    was_enabled = staff.totp_enabled_at is not None
    staff.totp_secret = None
    staff.totp_enabled_at = None
    staff.totp_last_step = None
    if was_enabled:
        own = actor.staff_id == staff.id
        action = audit.Action.TOTP_DISABLED if own else audit.Action.STAFF_TOTP_RESET
        audit.record(session, actor, action, target=audit_target(staff))
    return was_enabled

