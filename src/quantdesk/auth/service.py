"""Auth rules: accounts, log-in and lock-out, token families and rotation, passwords, roles.

Plain functions over a SQLAlchemy session, no Flask: the routes, the CLI and tests call them.
Token *encoding* is the HTTP layer's job (auth/tokens.py); here a login session is a
`TokenFamily` row and the ids (jti) of the tokens it may use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk import mail
from quantdesk.auth import permissions
from quantdesk.auth.models import (
    AuditEvent,
    LoginAttempt,
    PasswordResetToken,
    RevokedToken,
    Role,
    TokenFamily,
    User,
)
from quantdesk.auth.passwords import burn_verify_time, hash_password, verify_password
from quantdesk.db import utcnow
from quantdesk.errors import Conflict, Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from quantdesk.kvstore import KeyStore
from quantdesk.settings import Settings

DEFAULT_ROLE = "user"
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class ClientInfo:
    """Who is asking, for the audit log and the login-attempt table."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class TokenGrant:
    """The ids of a fresh access/refresh token pair of one login session."""

    user: User
    family_id: str
    access_jti: str
    refresh_jti: str


# ---------------------------------------------------------------- audit


def audit(
    session: Session,
    event: str,
    *,
    client: ClientInfo,
    user_id: int | None = None,
    actor_id: int | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditEvent(
            event=event,
            user_id=user_id,
            actor_id=actor_id if actor_id is not None else user_id,
            ip=client.ip,
            user_agent=(client.user_agent or "")[:255] or None,
            request_id=client.request_id,
            details=details,
        )
    )


# ---------------------------------------------------------------- accounts


def _find_by_username(session: Session, username: str) -> User | None:
    stmt = select(User).where(func.lower(User.username) == username.lower())
    return session.scalars(stmt).first()


def _find_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.lower())).first()


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(session: Session, username: str) -> User | None:
    return _find_by_username(session, username)


def _role(session: Session, name: str) -> Role:
    role = session.scalars(select(Role).where(Role.name == name)).first()
    if role is None:
        raise NotFound(f"role {name!r} does not exist")
    return role


def _check_password_rules(settings: Settings, password: str, *, field: str) -> None:
    if len(password) < settings.PASSWORD_MIN_LENGTH:
        raise Invalid(
            "The password is too short.",
            details={field: [f"Use at least {settings.PASSWORD_MIN_LENGTH} characters."]},
        )
    if not password.strip():
        raise Invalid("The password is blank.", details={field: ["Use visible characters."]})


def register(
    session: Session,
    *,
    settings: Settings,
    username: str,
    email: str,
    password: str,
    client: ClientInfo,
    roles: tuple[str, ...] = (DEFAULT_ROLE,),
) -> User:
    _check_password_rules(settings, password, field="password")
    conflicts = {}
    if _find_by_username(session, username):
        conflicts["username"] = ["This username is taken."]
    if _find_by_email(session, email):
        conflicts["email"] = ["An account with this email exists."]
    if conflicts:
        raise Conflict("An account with these details already exists.", details=conflicts)
    user = User(
        username=username,
        email=email.lower(),
        password_hash=hash_password(settings, password),
        is_active=True,
    )
    user.roles = [_role(session, name) for name in roles]
    session.add(user)
    session.flush()
    audit(session, "register", client=client, user_id=user.id)
    session.commit()
    return user


# ---------------------------------------------------------------- log-in and lock-out


def lockout_seconds_left(
    session: Session, *, settings: Settings, user: User, now: dt.datetime
) -> int:
    """Seconds until `user` may try again, 0 when not locked.

    Locked when the last LOGIN_MAX_FAILURES failures since the last success all fall within
    LOGIN_WINDOW_MINUTES; the lock lasts LOGIN_LOCKOUT_MINUTES from the last of them. Attempts
    made while locked are refused unrecorded, so they cannot extend the lock (OWASP
    Authentication Cheat Sheet, "Account Lockout").
    """
    last_success = session.scalar(
        select(func.max(LoginAttempt.created_at)).where(
            LoginAttempt.user_id == user.id, LoginAttempt.success.is_(True)
        )
    )
    stmt = (
        select(LoginAttempt.created_at)
        .where(LoginAttempt.user_id == user.id, LoginAttempt.success.is_(False))
        .order_by(LoginAttempt.created_at.desc())
        .limit(settings.LOGIN_MAX_FAILURES)
    )
    if last_success is not None:
        stmt = stmt.where(LoginAttempt.created_at > last_success)
    failures = [_aware(t) for t in session.scalars(stmt)]
    if len(failures) < settings.LOGIN_MAX_FAILURES:
        return 0
    newest, oldest = failures[0], failures[-1]
    if newest - oldest > dt.timedelta(minutes=settings.LOGIN_WINDOW_MINUTES):
        return 0
    locked_until = newest + dt.timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    return max(0, math.ceil((locked_until - now).total_seconds()))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def authenticate(
    session: Session,
    *,
    settings: Settings,
    identifier: str,
    password: str,
    client: ClientInfo,
) -> User:
    """The user whose username or email and password match; raises 401, 403 or 429 otherwise."""
    now = utcnow()
    user = _find_by_email(session, identifier) if "@" in identifier else None
    user = user or _find_by_username(session, identifier)
    if user is None:
        burn_verify_time(settings, password)
        session.add(
            LoginAttempt(user_id=None, identifier=identifier[:254], ip=client.ip, success=False)
        )
        audit(session, "login_failed", client=client, identifier=identifier[:254])
        session.commit()  # the failure is recorded although the request fails
        raise Unauthorized("Wrong username or password.")
    wait = lockout_seconds_left(session, settings=settings, user=user, now=now)
    if wait:
        audit(session, "login_locked", client=client, user_id=user.id, retry_after=wait)
        session.commit()
        raise TooManyRequests(
            "Too many failed log-ins: this account is locked for a while.", retry_after=wait
        )
    if not verify_password(settings, user.password_hash, password):
        session.add(
            LoginAttempt(user_id=user.id, identifier=identifier[:254], ip=client.ip, success=False)
        )
        audit(session, "login_failed", client=client, user_id=user.id)
        session.flush()
        if lockout_seconds_left(session, settings=settings, user=user, now=now):
            audit(session, "account_locked", client=client, user_id=user.id)
        session.commit()
        raise Unauthorized("Wrong username or password.")
    if not user.is_active:
        audit(session, "login_refused_inactive", client=client, user_id=user.id)
        session.commit()
        raise Forbidden("This account is deactivated.")
    session.add(
        LoginAttempt(user_id=user.id, identifier=identifier[:254], ip=client.ip, success=True)
    )
    audit(session, "login", client=client, user_id=user.id)
    session.commit()
    return user


# ---------------------------------------------------------------- token families


def start_session(
    session: Session, *, settings: Settings, user: User, client: ClientInfo
) -> TokenGrant:
    now = utcnow()
    family = TokenFamily(
        id=str(uuid.uuid4()),
        user_id=user.id,
        current_jti=str(uuid.uuid4()),
        created_at=now,
        rotated_at=now,
        expires_at=now + dt.timedelta(days=settings.REFRESH_TOKEN_DAYS),
        ip=client.ip,
        user_agent=(client.user_agent or "")[:255] or None,
    )
    session.add(family)
    session.commit()
    return TokenGrant(user, family.id, str(uuid.uuid4()), family.current_jti)


def rotate_refresh(
    session: Session,
    *,
    settings: Settings,
    keystore: KeyStore,
    user: User,
    family_id: str,
    refresh_jti: str,
    client: ClientInfo,
) -> TokenGrant:
    """Exchange the family's current refresh token for a new pair; re-use revokes the family."""
    family = session.get(TokenFamily, family_id, with_for_update=True)
    if family is None or family.user_id != user.id or family.revoked_at is not None:
        raise Unauthorized("This refresh token has been revoked.")
    if family.current_jti != refresh_jti:
        _revoke_family(session, keystore, family, reason="refresh_token_reuse")
        audit(session, "refresh_token_reuse", client=client, user_id=user.id, family=family.id)
        session.commit()
        raise Unauthorized("This refresh token was already used; the session is revoked.")
    now = utcnow()
    family.current_jti = str(uuid.uuid4())
    family.rotated_at = now
    family.expires_at = now + dt.timedelta(days=settings.REFRESH_TOKEN_DAYS)
    session.commit()
    return TokenGrant(user, family.id, str(uuid.uuid4()), family.current_jti)


def family_key(family_id: str) -> str:
    return f"blocklist:family:{family_id}"


def jti_key(jti: str) -> str:
    return f"blocklist:jti:{jti}"


def _ttl(until: dt.datetime) -> int:
    return max(1, math.ceil((_aware(until) - utcnow()).total_seconds()))


def _revoke_family(session: Session, keystore: KeyStore, family: TokenFamily, reason: str) -> None:
    if family.revoked_at is None:
        family.revoked_at = utcnow()
        family.revoked_reason = reason
    # Access tokens carry their family id, so this one key blocks every token of the session.
    keystore.set(family_key(family.id), _ttl(family.expires_at))


def revoke_other_sessions(
    session: Session, keystore: KeyStore, *, user_id: int, keep_family: str | None, reason: str
) -> int:
    stmt = select(TokenFamily).where(
        TokenFamily.user_id == user_id, TokenFamily.revoked_at.is_(None)
    )
    revoked = 0
    for family in session.scalars(stmt):
        if family.id != keep_family:
            _revoke_family(session, keystore, family, reason)
            revoked += 1
    return revoked


def logout(
    session: Session,
    *,
    keystore: KeyStore,
    user: User,
    family_id: str | None,
    access_jti: str,
    access_expires_at: dt.datetime,
    client: ClientInfo,
) -> None:
    """Revoke the access token and its login session (so its refresh token too)."""
    session.add(
        RevokedToken(
            jti=access_jti,
            token_type="access",  # noqa: S106 (a token kind, not a secret)
            user_id=user.id,
            expires_at=access_expires_at,
            reason="logout",
        )
    )
    keystore.set(jti_key(access_jti), _ttl(access_expires_at))
    family = session.get(TokenFamily, family_id) if family_id else None
    if family is not None and family.user_id == user.id:
        _revoke_family(session, keystore, family, reason="logout")
    audit(session, "logout", client=client, user_id=user.id)
    session.commit()


def warm_keystore(session: Session, keystore: KeyStore) -> int:
    """Copy unexpired revocations from the database into the key store (after a restart)."""
    now = utcnow()
    count = 0
    for jti, expires in session.execute(
        select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.expires_at > now)
    ):
        keystore.set(jti_key(jti), _ttl(expires))
        count += 1
    for family_id, expires in session.execute(
        select(TokenFamily.id, TokenFamily.expires_at).where(
            TokenFamily.revoked_at.is_not(None), TokenFamily.expires_at > now
        )
    ):
        keystore.set(family_key(family_id), _ttl(expires))
        count += 1
    return count


# ---------------------------------------------------------------- passwords


def change_password(
    session: Session,
    *,
    settings: Settings,
    keystore: KeyStore,
    user: User,
    old_password: str,
    new_password: str,
    current_family: str | None,
    client: ClientInfo,
) -> int:
    """Set a new password and revoke every other login session; returns how many."""
    if not verify_password(settings, user.password_hash, old_password):
        raise Invalid("The current password is wrong.", details={"old_password": ["Wrong."]})
    _check_password_rules(settings, new_password, field="new_password")
    if old_password == new_password:
        raise Invalid(
            "The new password is the old one.",
            details={"new_password": ["Choose a password you have not just used."]},
        )
    _set_password(settings, user, new_password)
    revoked = revoke_other_sessions(
        session, keystore, user_id=user.id, keep_family=current_family, reason="password_change"
    )
    audit(session, "password_change", client=client, user_id=user.id, sessions_revoked=revoked)
    session.commit()
    return revoked


def _set_password(settings: Settings, user: User, password: str) -> None:
    user.password_hash = hash_password(settings, password)
    user.password_changed_at = utcnow()


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_password_reset(
    session: Session, *, settings: Settings, email: str, client: ClientInfo
) -> int | None:
    """Queue a reset mail when the email has an active account; returns the outbox mail id.

    The caller answers 202 either way, so the response does not reveal which emails exist.
    """
    user = _find_by_email(session, email)
    if user is None or not user.is_active:
        audit(session, "password_reset_request_unknown", client=client, email=email.lower())
        session.commit()
        return None
    token = secrets.token_urlsafe(32)
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=_token_digest(token),
            expires_at=utcnow() + dt.timedelta(minutes=settings.RESET_TOKEN_MINUTES),
        )
    )
    link = settings.PASSWORD_RESET_URL.replace("{token}", token)
    body = (
        f"Hello {user.full_name or user.username},\n\n"
        f"Someone asked to reset the password of your QuantDesk account.\n"
        f"Use this link within {settings.RESET_TOKEN_MINUTES} minutes:\n\n{link}\n\n"
        f"Reset token: {token}\n\n"
        "If it was not you, ignore this mail; your password stays as it is.\n"
    )
    email_row = mail.queue_email(
        session, to=user.email, subject="Reset your QuantDesk password", body=body
    )
    audit(session, "password_reset_request", client=client, user_id=user.id)
    session.commit()
    return email_row.id


def reset_password(
    session: Session,
    *,
    settings: Settings,
    keystore: KeyStore,
    token: str,
    new_password: str,
    client: ClientInfo,
) -> User:
    """Use a reset token once: set the password and revoke every login session of the user."""
    row = session.scalars(
        select(PasswordResetToken)
        .where(PasswordResetToken.token_hash == _token_digest(token))
        .with_for_update()
    ).first()
    if row is None or row.used_at is not None or _aware(row.expires_at) <= utcnow():
        raise Invalid(
            "This reset token is invalid, used or expired.",
            details={"token": ["Ask for a new reset mail."]},
        )
    _check_password_rules(settings, new_password, field="new_password")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Invalid("This reset token is invalid, used or expired.", details={"token": []})
    row.used_at = utcnow()
    _set_password(settings, user, new_password)
    revoke_other_sessions(
        session, keystore, user_id=user.id, keep_family=None, reason="password_reset"
    )
    audit(session, "password_reset", client=client, user_id=user.id)
    session.commit()
    return user


# ---------------------------------------------------------------- profile and administration


def update_profile(session: Session, *, user: User, changes: dict[str, Any]) -> User:
    email = changes.get("email")
    if email is not None:
        owner = _find_by_email(session, email)
        if owner is not None and owner.id != user.id:
            raise Conflict(
                "An account with this email exists.",
                details={"email": ["An account with this email exists."]},
            )
        changes = {**changes, "email": email.lower()}
    for field in ("full_name", "avatar_url", "phone", "email", "language"):
        if field in changes:
            setattr(user, field, changes[field])
    session.commit()
    return user


def has_permission(user: User, permission: str) -> bool:
    return permissions.granted(
        [perm for role in user.roles for perm in (role.permissions or [])], permission
    )


def ensure_permission(user: User, permission: str) -> None:
    if not has_permission(user, permission):
        raise Forbidden(f"You need the permission {permission!r} for this.")


def list_audit_events(session: Session, *, event: str | None, user_id: int | None) -> Any:
    """A select of audit events for the admin, newest first."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc())
    if event:
        stmt = stmt.where(AuditEvent.event == event)
    if user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    return stmt


def list_users(session: Session, *, query: str | None) -> Any:
    """A select of users for the admin list, newest first."""
    stmt = select(User).order_by(User.id.desc())
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(
            func.lower(User.username).like(pattern) | func.lower(User.email).like(pattern)
        )
    return stmt


def admin_update_user(
    session: Session,
    *,
    keystore: KeyStore,
    actor: User,
    user_id: int,
    roles: list[str] | None,
    is_active: bool | None,
    client: ClientInfo,
) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    if user.id == actor.id and (
        is_active is False or (roles is not None and ADMIN_ROLE not in roles)
    ):
        raise Conflict("You cannot deactivate yourself or remove your own admin role.")
    if roles is not None:
        known = {role.name: role for role in session.scalars(select(Role))}
        unknown = sorted(set(roles) - set(known))
        if unknown:
            raise Invalid("Unknown roles.", details={"roles": [f"unknown: {', '.join(unknown)}"]})
        before = user.role_names
        user.roles = [known[name] for name in sorted(set(roles))]
        if before != user.role_names:
            audit(
                session,
                "role_change",
                client=client,
                user_id=user.id,
                actor_id=actor.id,
                before=before,
                after=user.role_names,
            )
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        if not is_active:
            revoke_other_sessions(
                session, keystore, user_id=user.id, keep_family=None, reason="deactivated"
            )
        audit(
            session,
            "user_activated" if is_active else "user_deactivated",
            client=client,
            user_id=user.id,
            actor_id=actor.id,
        )
    session.commit()
    return user


def ensure_admin(
    session: Session,
    *,
    settings: Settings,
    username: str,
    email: str,
    password: str | None,
) -> tuple[User, bool]:
    """Create an admin, or grant the admin role to an existing account; (user, created)."""
    client = ClientInfo(user_agent="quantdesk create-admin")
    user = _find_by_username(session, username)
    if user is None:
        if not password:
            raise Invalid("A new admin needs a password.", details={"password": ["Required."]})
        user = register(
            session,
            settings=settings,
            username=username,
            email=email,
            password=password,
            client=client,
            roles=(DEFAULT_ROLE, ADMIN_ROLE),
        )
        audit(session, "role_change", client=client, user_id=user.id, after=user.role_names)
        session.commit()
        return user, True
    if ADMIN_ROLE not in user.role_names:
        before = user.role_names
        user.roles = [*user.roles, _role(session, ADMIN_ROLE)]
        audit(
            session,
            "role_change",
            client=client,
            user_id=user.id,
            before=before,
            after=user.role_names,
        )
    if password:
        _check_password_rules(settings, password, field="password")
        _set_password(settings, user, password)
        audit(session, "password_change", client=client, user_id=user.id)
    session.commit()
    return user, False
